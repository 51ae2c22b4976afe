//! The conformance suite on `mysql://`, against a throwaway MariaDB started per test.
use warden_testkit::mysql_harness::MysqlHarness;

warden_testkit::conformance_tests!(MysqlHarness::new());
