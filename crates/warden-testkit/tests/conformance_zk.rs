//! The conformance suite on `zk://`, against a throwaway standalone ZooKeeper started per test.
use warden_testkit::zk_harness::ZkHarness;

warden_testkit::conformance_tests!(ZkHarness::new());
