//! Builds the C test double of libnrt (tests/nrt_double) and the fake PJRT
//! plugins (tests/pjrt_fake) into shared libraries in OUT_DIR and tells the
//! tests where they are. Nothing links them: the tests load them through
//! the same dlopen path as the real runtimes, so the shipped binary never
//! contains them. (specc's version stamp is made by
//! crates/specc-driver/build.rs.)

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    build_nrt_double();
    build_pjrt_fakes();
}

/// Shared-library builds of `source` with extra compiler arguments.
fn shared_library(source: &str, lib: &std::path::Path, defines: &[&str]) -> Result<(), String> {
    let compiler = cc::Build::new().opt_level(1).get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-std=c11", "-D_POSIX_C_SOURCE=200809L", "-Wall", "-Wextra", "-Werror"])
        .args(defines)
        .arg("-o")
        .arg(lib)
        .arg(source)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("compiling {source} failed ({s})")),
        Err(e) => Err(format!("could not run the C compiler for {source}: {e}")),
    }
}

/// Three libraries that are not usable PJRT plugins: API 0.50 (too old),
/// API 1.0 (another major version), and 0.81 with a 10-entry table.
fn build_pjrt_fakes() {
    const SOURCE: &str = "tests/pjrt_fake/pjrt_fake.c";
    println!("cargo:rerun-if-changed={SOURCE}");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    for (name, defines) in [
        ("OLD", ["-DFAKE_MAJOR=0", "-DFAKE_MINOR=50", "-DFAKE_FUNCTIONS=120"]),
        ("MAJOR", ["-DFAKE_MAJOR=1", "-DFAKE_MINOR=0", "-DFAKE_FUNCTIONS=120"]),
        ("SHORT", ["-DFAKE_MAJOR=0", "-DFAKE_MINOR=81", "-DFAKE_FUNCTIONS=10"]),
    ] {
        let lib = out.join(format!("libpjrt_fake_{}.so", name.to_lowercase()));
        if let Err(e) = shared_library(SOURCE, &lib, &defines) {
            panic!("{e}");
        }
        println!("cargo:rustc-env=SPECC_PJRT_FAKE_{name}={}", lib.display());
    }
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
    match shared_library(SOURCE, &lib, &["-pthread"]) {
        Ok(()) => println!("cargo:rustc-env=SPECC_NRT_DOUBLE={}", lib.display()),
        Err(e) => panic!("the libnrt test double: {e}"),
    }
}
