//! `tacet sourcemaps upload|list|delete`: source maps to a running server's admin API, the way release
//! tooling does it (the admin key from `TACET_ADMIN_KEY`, never a flag: flags end up in shell history).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum SourcemapsCommand {
    /// Upload the source maps of a release: each FILE (`app.3f9c.js.map`) is the map of the minified file
    /// at URL-PREFIX + its name without `.map` (`https://app.example/static/app.3f9c.js`). Crashes of that
    /// release whose frames name that URL are then stored with original files, lines and functions.
    Upload {
        /// The server, e.g. https://tacet.example.com
        #[arg(long)]
        server: String,
        /// The release the crashes carry (the tracker's data-release).
        #[arg(long)]
        release: String,
        /// Where the minified files are served from, e.g. https://app.example/static/
        #[arg(long)]
        url_prefix: String,
        /// The maps (`*.map`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the uploaded maps (of one release, or all).
    List {
        #[arg(long)]
        server: String,
        #[arg(long)]
        release: Option<String>,
    },
    /// Delete the maps of a release (or the one of --url).
    Delete {
        #[arg(long)]
        server: String,
        #[arg(long)]
        release: String,
        #[arg(long)]
        url: Option<String>,
    },
}

fn admin_key() -> anyhow::Result<String> {
    std::env::var("TACET_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .context("set TACET_ADMIN_KEY to the tenant's admin key (the tenant is the key's)")
}

/// The answer's body, or an error with the server's own words.
async fn answer(resp: reqwest_client::Response, what: &str) -> anyhow::Result<serde_json::Value> {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let said = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{what}: the server answered {status}: {said}");
    }
    Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
}

pub async fn run(command: SourcemapsCommand) -> anyhow::Result<()> {
    let client = reqwest_client::Client::new();
    let key = admin_key()?;
    let endpoint = |server: &str| format!("{}/v1/admin/sourcemaps", server.trim_end_matches('/'));
    match command {
        SourcemapsCommand::Upload {
            server,
            release,
            url_prefix,
            files,
        } => {
            let total = files.len();
            let mut bytes = 0;
            let mut regrouped = 0;
            for (i, file) in files.iter().enumerate() {
                let name = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".map"))
                    .with_context(|| {
                        format!("{}: a map's name ends in .map (app.js.map)", file.display())
                    })?;
                let url = format!("{}/{name}", url_prefix.trim_end_matches('/'));
                let map = std::fs::read(file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                bytes += map.len();
                let resp = client
                    .put(endpoint(&server))
                    .query(&[("release", release.as_str()), ("url", url.as_str())])
                    .bearer_auth(&key)
                    .body(map)
                    .send()
                    .await
                    .with_context(|| format!("cannot reach {server}"))?;
                let said = answer(resp, &format!("{}", file.display())).await?;
                regrouped += said["regrouped"].as_u64().unwrap_or(0);
                eprintln!("[{}/{total}] {} -> {url}", i + 1, file.display());
            }
            println!("uploaded {total} source map(s), {bytes} bytes, for release {release}");
            if regrouped > 0 {
                println!(
                    "{regrouped} crash group(s) of {release} from before the upload merged into their symbolicated groups"
                );
            }
        }
        SourcemapsCommand::List { server, release } => {
            let mut req = client.get(endpoint(&server)).bearer_auth(&key);
            if let Some(r) = &release {
                req = req.query(&[("release", r.as_str())]);
            }
            let maps = answer(
                req.send()
                    .await
                    .with_context(|| format!("cannot reach {server}"))?,
                "list",
            )
            .await?;
            for m in maps.as_array().into_iter().flatten() {
                println!(
                    "{}\t{}\t{} bytes\t{}",
                    m["release"].as_str().unwrap_or(""),
                    m["url"].as_str().unwrap_or(""),
                    m["bytes"],
                    m["uploaded"].as_str().unwrap_or("")
                );
            }
        }
        SourcemapsCommand::Delete {
            server,
            release,
            url,
        } => {
            let mut query = vec![("release", release.as_str())];
            if let Some(u) = &url {
                query.push(("url", u.as_str()));
            }
            let req = client
                .delete(endpoint(&server))
                .query(&query)
                .bearer_auth(&key);
            let said = answer(
                req.send()
                    .await
                    .with_context(|| format!("cannot reach {server}"))?,
                "delete",
            )
            .await?;
            println!(
                "deleted {} source map(s) of release {release}",
                said["deleted"]
            );
        }
    }
    Ok(())
}
