//! `GET /`: one plain HTML page, rendered by the node: every dataset with its card, files,
//! sizes and download links, and the network's health. No script, no external asset.

use std::{fmt::Write, sync::Arc};

use axum::{
    extract::State,
    http::{HeaderValue, header},
    response::{Html, IntoResponse, Response},
};

use crate::{
    Api,
    datasets::{file_url, network_view},
};

/// Datasets shown with their cards and files; the rest are listed by name.
const DETAILED: usize = 20;
/// Files listed per dataset.
const FILES_SHOWN: usize = 50;

const STYLE: &str = "
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#26303b;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:20px}
header p{margin:2px 0 0;color:#c4ccd6;font-size:13px}
main{max-width:1040px;margin:0 auto;padding:18px 28px}
section{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:14px 18px;margin:14px 0}
h2{font-size:17px;margin:0 0 8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eceff3}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
pre.card{white-space:pre-wrap;background:#f3f5f7;padding:8px 10px;border-radius:4px;font-size:13px;max-height:220px;overflow:auto}
.meta{color:#5b6673;font-size:13px}
.ok{color:#17803d}.bad{color:#b42318}
a{color:#1f5fbf}
code{font-size:12px}
";

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Bytes in binary units.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The page. Parts that cannot be read right now say so instead of failing the page.
pub(crate) async fn index(State(api): State<Arc<Api>>) -> Response {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content='width=device-width,initial-scale=1'>\
         <title>Cairn datasets</title><style>{STYLE}</style></head><body>\
         <header><h1>Cairn</h1><p>Datasets stored across the network, erasure-coded and \
         audited; every file below is rebuilt from its pieces as you download it. \
         API: <a style='color:#fff' href='/openapi.json'>/openapi.json</a></p></header><main>"
    );
    match network_view(&api).await {
        Ok(net) => {
            let flagged = net
                .nodes
                .iter()
                .filter(|n| n.standing.as_ref().is_some_and(|s| s.flagged))
                .count();
            let _ = write!(
                o,
                "<section id=network><h2>Network</h2><p class=meta>{} nodes, {} held, {} \
                 datasets; {}</p><table><tr><th>node</th><th class=n>pieces</th>\
                 <th class=n>held</th><th class=n>capacity</th><th class=n>reputation</th>\
                 <th>standing</th></tr>",
                net.nodes.len(),
                human(net.held_bytes),
                net.datasets,
                if flagged == 0 {
                    "<span class=ok>no node flagged</span>".to_string()
                } else {
                    format!("<span class=bad>{flagged} flagged</span>")
                }
            );
            for n in &net.nodes {
                let (score, standing) = match &n.standing {
                    Some(s) if s.flagged => {
                        (format!("{:.2}", s.score), "<span class=bad>flagged</span>")
                    }
                    Some(s) if s.failing => {
                        (format!("{:.2}", s.score), "<span class=bad>failing</span>")
                    }
                    Some(s) => (format!("{:.2}", s.score), "<span class=ok>ok</span>"),
                    None => ("–".into(), "<span class=meta>not audited yet</span>"),
                };
                let short = n
                    .peer
                    .get(n.peer.len().saturating_sub(12)..)
                    .unwrap_or(&n.peer);
                let _ = write!(
                    o,
                    "<tr class=node><td><code title='{}'>…{}</code>{}</td><td class=n>{}</td>\
                     <td class=n>{}</td><td class=n>{}</td><td class=n>{score}</td><td>{standing}</td></tr>",
                    esc(&n.peer),
                    esc(short),
                    if n.peer == net.this {
                        " (this node)"
                    } else {
                        ""
                    },
                    n.pieces,
                    human(n.held_bytes),
                    n.capacity.map_or("unlimited".into(), human),
                );
            }
            o.push_str("</table></section>");
        }
        Err(e) => {
            let _ = write!(
                o,
                "<section id=network><h2>Network</h2><p class=bad>cannot read the network \
                 right now: {}</p></section>",
                esc(&e.message)
            );
        }
    }
    let client = api.reader.client();
    match client.datasets().await {
        Ok(mut all) => {
            all.sort_by(|a, b| a.name.cmp(&b.name));
            let _ = write!(
                o,
                "<h2 style='margin-top:22px'>Datasets ({})</h2>",
                all.len()
            );
            if all.is_empty() {
                o.push_str(
                    "<section><p class=meta>No datasets yet. Publish one with \
                     <code>cairn dataset push DIR --name owner/name</code>.</p></section>",
                );
            }
            for (i, d) in all.iter().enumerate() {
                let name_ok = d.name.parse::<storage_node::ids::DatasetName>();
                let detail = match (&name_ok, i < DETAILED) {
                    (Ok(name), true) => api.reader.manifest(name, None).await.ok(),
                    _ => None,
                };
                let _ = write!(
                    o,
                    "<section class=dataset id='ds-{}'><h2>{}</h2><p class=meta>{} files, {}, \
                     {} version(s), license {} · latest <code>{}</code> · \
                     <a href='/v1/datasets/{}'>JSON</a></p>",
                    esc(&d.name),
                    esc(&d.name),
                    d.files,
                    human(d.size),
                    d.versions,
                    esc(&d.license),
                    esc(d.latest.get(..16).unwrap_or(&d.latest)),
                    esc(&d.name),
                );
                if let Some(m) = detail {
                    if !m.body().card.is_empty() {
                        let _ = write!(o, "<pre class=card>{}</pre>", esc(&m.body().card));
                    }
                    o.push_str("<table><tr><th>file</th><th class=n>size</th><th></th></tr>");
                    for f in m.files().iter().take(FILES_SHOWN) {
                        let url = file_url(m.name(), m.version(), f.path.as_str());
                        let _ = write!(
                            o,
                            "<tr class=file><td>{}</td><td class=n>{}</td>\
                             <td><a href='{}' download>download</a></td></tr>",
                            esc(f.path.as_str()),
                            human(f.size),
                            esc(&url)
                        );
                    }
                    if m.files().len() > FILES_SHOWN {
                        let _ = write!(
                            o,
                            "<tr><td class=meta colspan=3>and {} more: see the JSON</td></tr>",
                            m.files().len() - FILES_SHOWN
                        );
                    }
                    o.push_str("</table>");
                }
                o.push_str("</section>");
            }
        }
        Err(e) => {
            let _ = write!(
                o,
                "<section><p class=bad>cannot list datasets right now: {}</p></section>",
                esc(&e.to_string())
            );
        }
    }
    o.push_str("</main></body></html>");
    let mut r = Html(o).into_response();
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::{esc, human};

    #[test]
    fn text_is_escaped_and_sizes_read_well() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
