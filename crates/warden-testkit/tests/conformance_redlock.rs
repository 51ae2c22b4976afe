//! The conformance suite on `redlock://` over three real redis-servers.
use warden_testkit::harness::RedlockHarness;

warden_testkit::conformance_tests!(RedlockHarness::new());
