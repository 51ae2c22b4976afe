//! The conformance suite on `etcd://`, against a throwaway single-member etcd started per test.
use warden_testkit::etcd_harness::EtcdHarness;

warden_testkit::conformance_tests!(EtcdHarness::new());
