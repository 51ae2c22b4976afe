//! The conformance suite on `redis://`, against a real redis-server started per test.
use warden_testkit::harness::RedisHarness;

warden_testkit::conformance_tests!(RedisHarness::new());
