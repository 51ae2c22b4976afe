//! The conformance suite on `redis+sentinel://`, against a real set (1 primary, 1 replica, 3 sentinels) per test.
use warden_testkit::cluster_harness::RedisSentinelHarness;

warden_testkit::conformance_tests!(RedisSentinelHarness::new());
