//! The conformance suite on `postgres://`, against a throwaway PostgreSQL started per test.
use warden_testkit::postgres_harness::PostgresHarness;

warden_testkit::conformance_tests!(PostgresHarness::new());
