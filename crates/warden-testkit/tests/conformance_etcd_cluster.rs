//! The conformance suite on `etcd://` over a throwaway three-member etcd cluster started per test.
use warden_testkit::etcd_harness::EtcdHarness;

warden_testkit::conformance_tests!(EtcdHarness::with_members(3));
