//! Geography from a MaxMind DB file (GeoLite2 or DB-IP Lite City/Country, GeoIP2-City schema).

use std::fmt;
use std::net::IpAddr;

use maxminddb::{Reader, path};

/// Where an address is, as far as the database knows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Location {
    /// ISO 3166-1 alpha-2.
    pub country: Option<String>,
    /// First subdivision: ISO code when the database has it, else its English name.
    pub region: Option<String>,
    /// English city name.
    pub city: Option<String>,
}

/// A GeoIP database loaded into memory.
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
#[error("not a MaxMind DB file: {0}")]
pub struct GeoError(String);

impl fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoDb")
            .field("database_type", &self.reader.metadata().database_type)
            .finish()
    }
}

impl GeoDb {
    /// Opens a database from its bytes (the caller reads the file).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GeoError> {
        let reader = Reader::from_source(bytes).map_err(|e| GeoError(e.to_string()))?;
        Ok(Self { reader })
    }

    /// The database type from its metadata, e.g. `GeoIP2-City` or `DBIP-City-Lite`.
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Looks an address up; unknown addresses and lookup errors give an empty location.
    pub fn lookup(&self, ip: IpAddr) -> Location {
        let Ok(found) = self.reader.lookup(ip) else {
            return Location::default();
        };
        if !found.has_data() {
            return Location::default();
        }
        let get = |p: &[maxminddb::PathElement<'_>]| found.decode_path::<String>(p).ok().flatten();
        Location {
            country: get(&path!["country", "iso_code"]),
            region: get(&path!["subdivisions", 0, "iso_code"])
                .or_else(|| get(&path!["subdivisions", 0, "names", "en"])),
            city: get(&path!["city", "names", "en"]),
        }
    }
}
