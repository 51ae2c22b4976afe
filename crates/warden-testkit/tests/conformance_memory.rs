//! The conformance suite on the in-process `memory://` backend.
use warden_testkit::harness::MemoryHarness;

warden_testkit::conformance_tests!(MemoryHarness::new());
