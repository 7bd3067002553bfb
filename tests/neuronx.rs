//! The neuronx-cc driver of `specc compile` on a generation artifact, with a
//! stand-in compiler: the flags per graph kind, the NEFF cache (hits, what
//! misses, damaged entries), parallel runs bounded by `--jobs`, and failures
//! (every failing graph named with its log, no complete artifact left).

mod common;
use common::*;
use specc_artifact::Artifact;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("specc-neuronx-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A stand-in `neuronx-cc`, configured by files beside it:
/// `version` (what `--version` prints; absent, `--version` fails),
/// `auto-cast` (the `--auto-cast` it expects, default `none`), `sleep`
/// (seconds per compile), `fail` (graph names it refuses, one a line).
/// It refuses arguments other than AWS's LLM flags with `-O1` for prefill
/// graphs and `-O2` for the others, appends `<graph> <-O>` to `invocations`
/// and, at each start, how many compiles are running to `concurrency`. Its
/// NEFF holds its process id, so equal NEFFs from two compiles mean one was
/// reused.
struct StandIn {
    dir: PathBuf,
}

const SCRIPT: &str = r#"#!/bin/sh
here=$(dirname "$0")
if [ "$1" = --version ]; then
  echo query >> "$here/version-queries"
  [ -f "$here/version" ] || { echo "no version configured" >&2; exit 2; }
  cat "$here/version"
  exit 0
fi
[ "$1" = compile ] || { echo "expected the compile subcommand, got: $*" >&2; exit 9; }
input=$2
shift 2
while [ $# -gt 0 ]; do
  case "$1" in
    --framework) framework=$2; shift;;
    --target) target=$2; shift;;
    --model-type) model_type=$2; shift;;
    --auto-cast) auto_cast=$2; shift;;
    -O1|-O2|-O3) level=$1;;
    --output) out=$2; shift;;
    --logfile) log=$2; shift;;
    *) echo "unexpected argument $1" >&2; exit 9;;
  esac
  shift
done
bad() { echo "bad arguments for $input: $*" >&2; exit 9; }
[ -f "$input" ] || bad "no input file"
case "$input" in *.hlo.pb) ;; *) bad "the input is not an .hlo.pb";; esac
[ "$framework" = XLA ] || bad "--framework $framework"
[ "$target" = trn1 ] || bad "--target $target"
[ "$model_type" = transformer ] || bad "--model-type $model_type"
want_cast=$(cat "$here/auto-cast" 2>/dev/null || echo none)
[ "$auto_cast" = "$want_cast" ] || bad "--auto-cast $auto_cast, expected $want_cast"
graph=$(basename "$input" .hlo.pb)
case "$graph" in *prefill*) want=-O1;; *) want=-O2;; esac
[ "$level" = "$want" ] || bad "$level for $graph, expected $want"
[ -n "$out" ] && [ -n "$log" ] || bad "no --output or --logfile"
echo "$graph $level" >> "$here/invocations"
mkdir -p "$here/running"
touch "$here/running/$$"
ls "$here/running" | wc -l | tr -d ' ' >> "$here/concurrency"
echo "stand-in neuronx-cc compiling $graph" > "$log"
sleep "$(cat "$here/sleep" 2>/dev/null || echo 0)"
rm -f "$here/running/$$"
if grep -qx "$graph" "$here/fail" 2>/dev/null; then
  echo "NCC_EXXX001 stand-in failure in $graph" >&2
  exit 3
fi
{ echo "NEFF $graph $$"; cat "$input"; } > "$out"
"#;

impl StandIn {
    fn new(dir: &Path) -> StandIn {
        let dir = dir.join("cc");
        std::fs::create_dir_all(&dir).unwrap();
        let s = StandIn { dir };
        std::fs::write(s.path(), SCRIPT).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(s.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        s.set("version", "neuronx-cc 2.99.0 (stand-in)");
        s
    }

    fn path(&self) -> PathBuf {
        self.dir.join("neuronx-cc")
    }

    fn set(&self, file: &str, text: &str) {
        std::fs::write(self.dir.join(file), format!("{text}\n")).unwrap();
    }

    fn lines(&self, file: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default().lines().map(String::from).collect()
    }

    /// Compile runs so far, as `(graph, -O level)`.
    fn invocations(&self) -> Vec<(String, String)> {
        self.lines("invocations")
            .iter()
            .map(|l| {
                let (g, o) = l.split_once(' ').unwrap();
                (g.to_string(), o.to_string())
            })
            .collect()
    }
}

/// `specc compile` of the tiny pair (9 graphs: 3 prefill, 6 others) into
/// `out`, with the stand-in compiler; never near the user's own NEFF cache.
fn compile(cc: &StandIn, out: &Path, extra: &[&str], env: &[(&str, &Path)]) -> (bool, String, String) {
    let pair = repo().join("graphs/small");
    let (t, d) = (pair.join("tiny-target/with_past/model.onnx"), pair.join("tiny-draft/with_past/model.onnx"));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_specc"));
    cmd.arg("compile").arg(&t).arg("--draft").arg(&d);
    cmd.args(["--max-seq-len", "32", "-k", "1", "--prompt-buckets", "16", "--target", "trn1"]);
    cmd.arg("--neuronx-cc").arg(cc.path()).arg("-o").arg(out).args(extra);
    cmd.env_remove("SPECC_NEFF_CACHE").env_remove("SPECC_NEURONX_CC");
    cmd.env("XDG_CACHE_HOME", cc.dir.join("xdg-cache-never-used"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (o.status.success(), text(&o.stdout), text(&o.stderr))
}

fn compiled(cc: &StandIn, out: &Path, extra: &[&str], env: &[(&str, &Path)]) -> (Artifact, String) {
    let (ok, stdout, stderr) = compile(cc, out, extra, env);
    assert!(ok, "{stderr}");
    (Artifact::open(out).unwrap(), stdout)
}

/// Every graph's NEFF bytes.
fn neffs(a: &Artifact) -> BTreeMap<String, Vec<u8>> {
    a.manifest.graphs.iter().map(|g| (g.name.clone(), a.read(g.neff.as_ref().expect("a NEFF")).unwrap())).collect()
}

const GRAPHS: usize = 9;

#[test]
fn a_neff_per_graph_with_its_level_and_the_cache_makes_recompiles_free() {
    let dir = tmp("cache");
    let cc = StandIn::new(&dir);
    let cache = dir.join("neff-cache");
    let cache_flag = ["--neff-cache", cache.to_str().unwrap()];

    let (a, report) = compiled(&cc, &dir.join("a"), &cache_flag, &[]);
    assert_eq!(a.manifest.graphs.len(), GRAPHS);
    let runs: BTreeMap<String, String> = cc.invocations().into_iter().collect();
    assert_eq!(cc.invocations().len(), GRAPHS, "one run per graph");
    for g in &a.manifest.graphs {
        let want = if g.kind == "prefill" { "-O1" } else { "-O2" };
        assert_eq!(runs[&g.name], want, "{} ({})", g.name, g.kind);
        assert!(g.neuronx_cc.command.contains(&want.to_string()), "{:?}", g.neuronx_cc.command);
        assert_eq!(g.neuronx_cc.status, "ok", "{}", g.name);
        assert!(g.neuronx_cc.log.is_some(), "{}", g.name);
    }
    assert_eq!(a.manifest.graphs.iter().filter(|g| g.kind == "prefill").count(), 3);
    assert!(
        report.contains(&format!("{GRAPHS} NEFF(s) built")) && report.contains("0 from the NEFF cache"),
        "{report}"
    );
    assert_eq!(cc.lines("version-queries").len(), 1, "the version is asked once per compile");

    // Same graphs, flags and compiler into another directory: no run, the
    // same bytes, and the manifest says where each NEFF came from.
    let (b, report) = compiled(&cc, &dir.join("b"), &cache_flag, &[]);
    assert_eq!(cc.invocations().len(), GRAPHS, "a cached compile runs no compiler");
    assert_eq!(neffs(&b), neffs(&a));
    for g in &b.manifest.graphs {
        assert!(g.neuronx_cc.status.starts_with("ok, from the NEFF cache ("), "{}", g.neuronx_cc.status);
        assert!(g.neuronx_cc.status.contains(cache.to_str().unwrap()), "{}", g.neuronx_cc.status);
    }
    assert!(report.contains(&format!("{GRAPHS} from the NEFF cache")), "{report}");

    // $SPECC_NEFF_CACHE names the same cache; --no-neff-cache ignores it.
    let (c, _) = compiled(&cc, &dir.join("c"), &[], &[("SPECC_NEFF_CACHE", &cache)]);
    assert_eq!(cc.invocations().len(), GRAPHS);
    assert_eq!(neffs(&c), neffs(&a));
    let (_, report) = compiled(&cc, &dir.join("d"), &["--no-neff-cache"], &[("SPECC_NEFF_CACHE", &cache)]);
    assert_eq!(cc.invocations().len(), 2 * GRAPHS);
    assert!(report.contains("NEFF cache off: turned off by --no-neff-cache"), "{report}");

    // Another flag misses (and is cached under its own key)...
    cc.set("auto-cast", "matmult");
    let flag = [&cache_flag[..], &["--auto-cast", "matmult"]].concat();
    let (e, _) = compiled(&cc, &dir.join("e"), &flag, &[]);
    assert_eq!(cc.invocations().len(), 3 * GRAPHS, "--auto-cast matmult must miss");
    assert_ne!(neffs(&e), neffs(&a));
    compiled(&cc, &dir.join("e2"), &flag, &[]);
    assert_eq!(cc.invocations().len(), 3 * GRAPHS);
    cc.set("auto-cast", "none");

    // ... and so does another compiler version.
    cc.set("version", "neuronx-cc 3.0.0 (stand-in)");
    compiled(&cc, &dir.join("f"), &cache_flag, &[]);
    assert_eq!(cc.invocations().len(), 4 * GRAPHS, "a new compiler version must miss");

    // A compiler whose --version fails is run without the cache.
    std::fs::remove_file(cc.dir.join("version")).unwrap();
    let (_, report) = compiled(&cc, &dir.join("g"), &cache_flag, &[]);
    assert_eq!(cc.invocations().len(), 5 * GRAPHS);
    assert!(report.contains("NEFF cache off:") && report.contains("--version` exited"), "{report}");
}

#[test]
fn jobs_bound_the_concurrent_compiler_runs() {
    let dir = tmp("jobs");
    let cc = StandIn::new(&dir);
    cc.set("sleep", "0.4");
    compiled(&cc, &dir.join("a"), &["--no-neff-cache", "--jobs", "2"], &[]);
    assert_eq!(cc.invocations().len(), GRAPHS);
    let seen: Vec<usize> = cc.lines("concurrency").iter().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(seen.len(), GRAPHS);
    assert_eq!(seen.iter().max(), Some(&2), "at most 2 at a time, and 2 at some point: {seen:?}");

    let (ok, _, err) = compile(&cc, &dir.join("b"), &["--jobs", "0"], &[]);
    assert!(!ok && err.contains("--jobs 0: give at least 1"), "{err}");
}

#[test]
fn every_failing_graph_is_named_with_its_log_and_no_artifact_looks_complete() {
    let dir = tmp("fail");
    let cc = StandIn::new(&dir);
    cc.set("fail", "verify_k1\nfused_k1_sample");
    let cache = dir.join("neff-cache");
    let flags = ["--neff-cache", cache.to_str().unwrap(), "--jobs", "3"];
    let out = dir.join("art");
    let (ok, _, err) = compile(&cc, &out, &flags, &[]);
    assert!(!ok, "the compile must fail");
    assert!(err.contains(&format!("neuronx-cc failed on 2 of {GRAPHS} graphs")), "{err}");
    for g in ["verify_k1", "fused_k1_sample"] {
        assert!(err.contains(&format!("graph `{g}`")), "{err}");
        assert!(err.contains(&format!("NCC_EXXX001 stand-in failure in {g}")), "{err}");
        let log = dir.join(format!("art.{g}.neuronx-cc.log"));
        assert!(err.contains(&format!("its log is {}", log.display())), "{err}");
        assert!(std::fs::read_to_string(&log).unwrap().contains(&format!("stand-in neuronx-cc compiling {g}")));
    }
    assert!(!out.exists(), "a failed compile leaves no artifact");
    let staging: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(staging.is_empty(), "staging directories must be removed: {staging:?}");

    // The graphs that built were cached: the retry compiles only the two.
    std::fs::remove_file(cc.dir.join("fail")).unwrap();
    let before = cc.invocations().len();
    compiled(&cc, &out, &flags, &[]);
    let retried: Vec<String> = cc.invocations()[before..].iter().map(|(g, _)| g.clone()).collect();
    assert_eq!(retried.len(), 2, "{retried:?}");
    assert!(retried.contains(&"verify_k1".to_string()) && retried.contains(&"fused_k1_sample".to_string()));
}

#[test]
fn a_damaged_cache_entry_is_compiled_again_with_a_warning() {
    let dir = tmp("corrupt");
    let cc = StandIn::new(&dir);
    let cache = dir.join("neff-cache");
    let flags = ["--neff-cache", cache.to_str().unwrap()];
    compiled(&cc, &dir.join("a"), &flags, &[]);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "neff"))
        .collect();
    entries.sort();
    assert_eq!(entries.len(), GRAPHS, "one entry per graph");

    // Flipped bytes in one NEFF, and another entry's checksum file gone.
    let mut bytes = std::fs::read(&entries[0]).unwrap();
    bytes[0] ^= 0x55;
    std::fs::write(&entries[0], bytes).unwrap();
    std::fs::remove_file(entries[1].with_extension("sha256")).unwrap();

    let (b, report) = compiled(&cc, &dir.join("b"), &flags, &[]);
    let rerun: Vec<String> = cc.invocations()[GRAPHS..].iter().map(|(g, _)| g.clone()).collect();
    assert_eq!(rerun.len(), 2, "only the damaged entries are compiled again: {rerun:?}");
    assert_eq!(report.matches("warning: the NEFF cache entry of graph").count(), 2, "{report}");
    assert!(report.contains("is corrupt") && report.contains("has no checksum file"), "{report}");
    for g in &b.manifest.graphs {
        let neff = b.read(g.neff.as_ref().unwrap()).unwrap();
        assert!(neff.starts_with(format!("NEFF {} ", g.name).as_bytes()), "{}", g.name);
        let want = if rerun.contains(&g.name) { "ok" } else { "ok, from the NEFF cache" };
        assert!(g.neuronx_cc.status.starts_with(want), "{}: {}", g.name, g.neuronx_cc.status);
    }

    // The recompiled NEFFs repaired the cache.
    compiled(&cc, &dir.join("c"), &flags, &[]);
    assert_eq!(cc.invocations().len(), GRAPHS + 2);
}

#[test]
fn installing_the_compiler_makes_an_artifact_without_neffs_out_of_date() {
    let dir = tmp("installed");
    let cc = StandIn::new(&dir);
    let out = dir.join("out");
    let pair = repo().join("graphs/small");
    let (t, d) = (pair.join("tiny-target/with_past/model.onnx"), pair.join("tiny-draft/with_past/model.onnx"));
    // First without any neuronx-cc (an empty PATH directory).
    let empty = dir.join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_specc"))
        .arg("compile")
        .arg(&t)
        .arg("--draft")
        .arg(&d)
        .args(["--max-seq-len", "32", "-k", "1", "--prompt-buckets", "16", "--target", "trn1", "-o"])
        .arg(&out)
        .env("PATH", &empty)
        .env_remove("SPECC_NEURONX_CC")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(Artifact::open(&out).unwrap().manifest.graphs.iter().all(|g| g.neff.is_none()));
    // Then with the compiler: the same models and flags, but not up to date.
    let (a, report) = compiled(&cc, &out, &["--no-neff-cache"], &[]);
    assert!(!report.contains("up to date"), "{report}");
    assert!(a.manifest.graphs.iter().all(|g| g.neff.is_some()));
}
