//! The conformance suite on `zk://` over a throwaway three-server ZooKeeper ensemble started per test.
use warden_testkit::zk_harness::ZkHarness;

warden_testkit::conformance_tests!(ZkHarness::with_members(3));
