//! The README's library quick start is `examples/quickstart.rs` to the byte, so the program a user pastes is the
//! one `cargo test` builds (examples are built with the tests): run it with
//! `cargo run -p warden-examples --example quickstart`.

#[test]
fn the_readme_quick_start_is_the_example_that_builds() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("## Library quick start")
        .nth(1)
        .expect("the README has a library quick start");
    let code = section
        .split("```rust\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a rust block in it");
    assert_eq!(
        code,
        include_str!("../quickstart.rs"),
        "the README's quick start and examples/quickstart.rs differ: copy one to the other"
    );
}
