//! Build script: chooses the admin UI that `src/admin/ui.rs` embeds. That is the production
//! build in `web/dist` when it exists, else a placeholder page (written to `OUT_DIR`) that says
//! how to build the UI, so that `cargo build` works before anyone has run npm.

use std::path::{Path, PathBuf};
use std::{env, fs};

/// The folder rust-embed reads, handed to it through this variable (`interpolate-folder-path`).
const UI_DIR_VAR: &str = "GEMINI_PROXY_UI_DIR";

const PLACEHOLDER: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gemini-proxy admin</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 42rem; margin: 3rem auto; padding: 0 1rem; }
code, pre { background: rgba(127, 127, 127, .15); border-radius: 4px; padding: .1rem .3rem; }
pre { padding: .75rem 1rem; overflow-x: auto; }
</style>
</head>
<body>
<h1>gemini-proxy admin UI: not built</h1>
<p>This binary was built before the web UI. Build the UI, then rebuild the proxy:</p>
<pre>cd web &amp;&amp; npm ci &amp;&amp; npm run build
cd .. &amp;&amp; cargo build</pre>
<p>The admin API works without it: <code>/api/v1</code> (described by <code>/api/v1/openapi.json</code>), <code>/metrics</code>, <code>/healthz</code>, <code>/readyz</code>.</p>
<p lang="zh">管理界面尚未构建：请先执行 <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>，再重新编译 gemini-proxy。</p>
</body>
</html>
"#;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let web = root.join("web");
    let dist = web.join("dist");
    let dir = if dist.join("index.html").is_file() {
        // A directory is scanned whole: any file vite writes makes cargo embed the new build.
        watch(&dist);
        dist
    } else {
        // No UI yet. Watch web/ (whole tree) so that the first `npm run build`, which creates
        // web/dist, is noticed. A path that does not exist must not be watched: cargo would then
        // re-run this script, and rebuild the crate, on every build.
        if web.is_dir() {
            watch(&web);
        }
        let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("ui-placeholder");
        fs::create_dir_all(&out).expect("create the placeholder UI folder in OUT_DIR");
        fs::write(out.join("index.html"), PLACEHOLDER).expect("write the placeholder UI page");
        println!("cargo:warning=web/dist/index.html is missing: embedding a placeholder admin page (build the UI with `cd web && npm ci && npm run build`, then rebuild)");
        out
    };
    println!("cargo:rustc-env={UI_DIR_VAR}={}", dir.display());
}

fn watch(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}
