//! Tells the tests whether they are compiled with optimizations (`cfg(optimized)`), so the
//! chaos test runs its full seed count in optimized builds (the `ci` and `release`
//! profiles) and a tenth of it in unoptimized ones, where it is about 15x slower.
//! `cfg(debug_assertions)` cannot tell: the `ci` profile is optimized with assertions on.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(optimized)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("OPT_LEVEL").is_ok_and(|level| level != "0") {
        println!("cargo::rustc-cfg=optimized");
    }
}
