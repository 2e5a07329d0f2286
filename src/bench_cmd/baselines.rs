//! The baselines the network is measured against, in the same run: a local copy of the
//! data, and a static HTTP file server with a client that downloads to disk.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// Copies every file of `src` into `dst` `times` over (fsyncing each), as the baseline of
/// writing that many bytes.
pub(super) fn copy_dir(src: &Path, dst: &Path, times: f64) -> Result<(Duration, u64)> {
    std::fs::create_dir_all(dst)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(src)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    let mut written = 0u64;
    let total: u64 = files
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum();
    let want = (total as f64 * times) as u64;
    let t = Instant::now();
    let mut round = 0;
    'outer: loop {
        for f in &files {
            if written >= want {
                break 'outer;
            }
            let to = dst.join(format!(
                "{round}-{}",
                f.file_name().map_or("x".into(), |n| n.to_string_lossy())
            ));
            let left = want - written;
            let len = f.metadata()?.len();
            if left >= len {
                std::fs::copy(f, &to)?;
                written += len;
            } else {
                let mut r = std::fs::File::open(f)?.take(left);
                let mut w = std::fs::File::create(&to)?;
                std::io::copy(&mut r, &mut w)?;
                written += left;
            }
            std::fs::File::open(&to)?.sync_all()?;
        }
        round += 1;
    }
    Ok((t.elapsed(), written))
}

/// A minimal static file server for files directly under `root`, one thread per
/// connection; the file goes out with `std::io::copy` (sendfile on Linux).
pub(super) fn static_server(root: PathBuf) -> Result<String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = l.local_addr()?;
    std::thread::Builder::new()
        .name("bench-static".into())
        .spawn(move || {
            for conn in l.incoming().flatten() {
                let root = root.clone();
                std::thread::spawn(move || serve_one(conn, &root).ok());
            }
        })?;
    Ok(format!("http://{addr}"))
}

pub(super) fn serve_one(mut conn: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut r = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
    }
    let name = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or("");
    let file = (!name.is_empty() && !name.contains('/') && !name.contains(".."))
        .then(|| std::fs::File::open(root.join(name)).ok())
        .flatten();
    match file {
        Some(mut f) => {
            let len = f.metadata()?.len();
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            )?;
            std::io::copy(&mut f, &mut conn)?;
        }
        None => write!(
            conn,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
    }
    Ok(())
}

/// Downloads `url` and checks it against the file at `want`; returns the time.
pub(super) fn download(url: &str, want: &Path) -> Result<(Duration, u64)> {
    let t = Instant::now();
    let mut r = ureq::get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    let mut body = r.body_mut().with_config().limit(u64::MAX).reader();
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let got = body.read(&mut buf)?;
        if got == 0 {
            break;
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
    let took = t.elapsed();
    let mut f = std::fs::File::open(want)?;
    let mut h2 = blake3::Hasher::new();
    std::io::copy(&mut f, &mut h2)?;
    if h.finalize() != h2.finalize() {
        bail!("GET {url} returned other bytes than {}", want.display());
    }
    Ok((took, n))
}
