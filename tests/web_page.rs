//! The node's web page in a real browser: headless Chromium loads `/` from a running
//! network, and the pushed dataset (card, files, sizes, working download links) and every
//! node show, also with a node down. A screenshot is kept as a test artifact.

mod common;

use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use common::{Net, text};

/// How long one Chromium run may take before it is killed, with all its processes.
const BROWSER_LIMIT: Duration = Duration::from_secs(60);

/// The system's Chromium (Debian's `chromium` package, which `.ci/run` installs).
fn chromium() -> PathBuf {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if let Some(p) = std::env::var_os("PATH")
            .iter()
            .flat_map(std::env::split_paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            return p;
        }
    }
    panic!(
        "no Chromium found on PATH (looked for chromium, chromium-browser, google-chrome): \
         install Debian's `chromium` package (apt-get install --no-install-recommends \
         chromium), as .ci/run does"
    );
}

/// Runs headless Chromium with `args` on `url` in a fresh profile and its own process
/// group, which is killed after [`BROWSER_LIMIT`]; returns its stdout.
fn browse(args: &[&str], url: &str) -> Vec<u8> {
    let profile = tempfile::tempdir().expect("profile dir");
    let t0 = Instant::now();
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            // Nothing but the page: no update checks, sync or other calls out of the
            // machine, which has no network beyond itself.
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    let group = format!("-{}", child.id());
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for chromium") {
            break s;
        }
        if t0.elapsed() > BROWSER_LIMIT {
            kill_group(&group);
            child.wait().ok();
            let err = err.join().unwrap_or_default();
            panic!(
                "chromium {args:?} {url} did not finish in {BROWSER_LIMIT:?}; stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Helpers it left behind would hold the pipes open.
    kill_group(&group);
    let out = out.join().expect("stdout reader");
    let err = err.join().expect("stderr reader");
    assert!(
        status.success(),
        "chromium {args:?} {url}: {status}; stderr:\n{}",
        String::from_utf8_lossy(&err)
    );
    eprintln!("chromium {args:?}: {:.1} s", t0.elapsed().as_secs_f64());
    out
}

/// Reads all of `r` on a thread of its own.
fn drain<R: std::io::Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut r) = r {
            r.read_to_end(&mut v).ok();
        }
        v
    })
}

fn kill_group(group: &str) {
    Command::new("kill")
        .args(["-KILL", "--", group])
        .stderr(Stdio::null())
        .status()
        .ok();
}

/// The page as Chromium renders it (`--dump-dom`), after checking a plain GET of it.
fn dom(url: &str) -> String {
    let mut r = ureq::get(url).call().expect("the page answers");
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    let ctype = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(ctype.starts_with("text/html"), "content-type {ctype:?}");
    let html = r.body_mut().read_to_string().expect("page body");
    assert!(html.ends_with("</html>"), "page cut short:\n{html}");
    String::from_utf8_lossy(&browse(&["--dump-dom"], url)).into_owned()
}

/// Each `<tr class="file">` row of the DOM: its file name (as serialized), size and link.
fn file_rows(dom: &str) -> Vec<(String, String, String)> {
    let cell = |row: &str, i: usize| -> String {
        row.split("<td")
            .nth(i + 1)
            .and_then(|c| c.split_once('>'))
            .and_then(|(_, c)| c.split_once("</td>"))
            .map(|(c, _)| c.to_string())
            .unwrap_or_default()
    };
    dom.split("<tr class=\"file\">")
        .skip(1)
        .map(|r| r.split("</tr>").next().unwrap_or(r))
        .map(|row| {
            let link = cell(row, 2);
            let href = link
                .split_once("href=\"")
                .and_then(|(_, h)| h.split_once('"'))
                .map(|(h, _)| h.to_string())
                .unwrap_or_default();
            assert!(
                link.contains(" download") && link.contains(">download</a>"),
                "not a download link: {link}"
            );
            (cell(row, 0), cell(row, 1), href)
        })
        .collect()
}

fn artifact_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let d = base.join("test-artifacts");
    std::fs::create_dir_all(&d).expect("artifact dir");
    d
}

#[test]
fn the_page_shows_datasets_and_nodes_in_a_real_browser() {
    chromium(); // fail before starting a network when there is no browser
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    std::fs::create_dir_all(src.join("images")).expect("mkdir");
    let files: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        // (path, as serialized in the DOM, as in the link, bytes)
        (
            "README.md",
            "README.md",
            "README.md",
            b"# Pebbles\n\nPhotographs of river pebbles, <b>not</b> escaped would be bad.\n"
                .to_vec(),
        ),
        (
            "labels.csv",
            "labels.csv",
            "labels.csv",
            b"file,label\na.png,0\n".to_vec(),
        ),
        (
            "images/a.png",
            "images/a.png",
            "images/a.png",
            storage_node::local::synthetic(70_000, 3),
        ),
        (
            "notes & refs.txt",
            "notes &amp; refs.txt",
            "notes%20%26%20refs.txt",
            b"see the card\n".to_vec(),
        ),
    ];
    for (p, _, _, b) in &files {
        std::fs::write(src.join(p), b).expect("write");
    }
    let o = net.push(&src, "geo/pebbles");
    assert!(o.status.success(), "{}", text(&o));
    let http = net.nodes()[0].http.clone();
    let url = format!("{http}/");

    let page = dom(&url);
    assert!(
        page.contains("<section id=\"network\">"),
        "no network section:\n{page}"
    );
    assert!(
        page.contains("<section class=\"dataset\" id=\"ds-geo/pebbles\">"),
        "no dataset section:\n{page}"
    );
    assert!(page.contains("<h2>geo/pebbles</h2>"), "{page}");
    assert!(
        page.contains("4 files, 68.5 KiB, 1 version(s), license CC0-1.0"),
        "dataset summary:\n{page}"
    );
    assert!(
        page.contains("Photographs of river pebbles"),
        "no card:\n{page}"
    );
    // The card is text, never markup.
    assert!(
        page.contains("&lt;b&gt;not&lt;/b&gt;"),
        "card not escaped:\n{page}"
    );
    let rows = file_rows(&page);
    assert_eq!(rows.len(), files.len(), "file rows {rows:?}:\n{page}");
    for (path, shown, link, bytes) in &files {
        let (_, size, href) = rows
            .iter()
            .find(|(name, _, _)| name == shown)
            .unwrap_or_else(|| panic!("no row for {path} in {rows:?}"));
        if bytes.len() < 1024 {
            assert_eq!(*size, format!("{} B", bytes.len()), "{path}");
        }
        assert!(
            href.starts_with("/v1/datasets/geo/pebbles/resolve/") && href.ends_with(link),
            "{path}: {href}"
        );
        // The link works: the file, rebuilt from its pieces.
        let got = ureq::get(format!("{http}{href}"))
            .call()
            .expect("download answers")
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .expect("download body");
        assert!(got == *bytes, "{path}: {} bytes downloaded", got.len());
    }
    assert!(
        rows.iter()
            .any(|(n, s, _)| n == "images/a.png" && s == "68.4 KiB"),
        "{rows:?}"
    );
    assert_eq!(
        page.matches("<tr class=\"node\">").count(),
        6,
        "node rows:\n{page}"
    );
    assert_eq!(page.matches("(this node)").count(), 1, "{page}");
    assert!(page.contains("6 nodes,"), "{page}");
    assert!(page.contains("no node flagged"), "{page}");

    let shot = artifact_dir().join("web-page.png");
    std::fs::remove_file(&shot).ok();
    browse(
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600",
        ],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}: {} bytes",
        shot.display(),
        png.len()
    );
    // IHDR: width and height, big-endian, right after the signature and chunk header.
    let dim = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().expect("4 bytes"));
    assert_eq!((dim(16), dim(20)), (1280, 1600), "screenshot size");
    eprintln!("screenshot: {}", shot.display());

    // With a node down the page still renders, dataset, card and files, and the files
    // still download: any k = 4 of a stripe's 6 pieces rebuild it.
    net.kill(5);
    let t0 = Instant::now();
    let page = dom(&url);
    let node_rows = page.matches("<tr class=\"node\">").count();
    eprintln!(
        "with node 5 down: page in {:.1} s, {node_rows} node rows",
        t0.elapsed().as_secs_f64(),
    );
    assert!((5..=6).contains(&node_rows), "node rows:\n{page}");
    assert!(
        page.contains("<section class=\"dataset\" id=\"ds-geo/pebbles\">"),
        "{page}"
    );
    assert!(page.contains("Photographs of river pebbles"), "{page}");
    let rows = file_rows(&page);
    assert_eq!(rows.len(), files.len(), "{page}");
    assert!(page.contains("<section id=\"network\">"), "{page}");
    assert!(!page.contains("cannot "), "a part failed:\n{page}");
    let (_, _, href) = rows
        .iter()
        .find(|(n, _, _)| n == "images/a.png")
        .expect("images/a.png row");
    let got = ureq::get(format!("{http}{href}"))
        .call()
        .expect("download answers with a node down")
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .expect("download body");
    assert!(got == files[2].3, "{} bytes downloaded", got.len());
}
