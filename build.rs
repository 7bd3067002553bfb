//! Builds the C test double of libnrt (tests/nrt_double) into a shared
//! library in OUT_DIR and tells the tests where it is. Nothing links it:
//! the tests load it through the same dlopen path as the real runtime, so
//! the shipped binary never contains it. (specc's version stamp is made by
//! crates/specc-driver/build.rs.)

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    build_nrt_double();
}

fn build_nrt_double() {
    const SOURCE: &str = "tests/nrt_double/nrt_double.c";
    println!("cargo:rerun-if-changed={SOURCE}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        // libnrt exists on Linux only; the contract tests say so when run elsewhere.
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let lib = out.join("libnrt_double.so");
    let compiler = cc::Build::new().opt_level(1).get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&lib)
        .arg(SOURCE)
        .status();
    match status {
        Ok(s) if s.success() => println!("cargo:rustc-env=SPECC_NRT_DOUBLE={}", lib.display()),
        Ok(s) => panic!("compiling the libnrt test double {SOURCE} failed ({s})"),
        Err(e) => panic!("could not run the C compiler for {SOURCE}: {e}"),
    }
}
