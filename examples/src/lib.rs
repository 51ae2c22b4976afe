//! Examples live beside this crate: `cargo run -p warden-examples --example flash_sale`.
