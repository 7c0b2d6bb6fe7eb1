//! Fuzz of the broker's packet framing (`read_packet`): whatever length a packet's fixed header
//! declares, the connection buffer never holds more than the largest accepted packet plus one
//! read, and a packet declared larger than that is refused from its header, before its body is
//! read. Measured with the counting allocator of this test binary (`linli_core::alloc_meter`).

use std::sync::OnceLock;
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;

use linli_core::alloc_meter::{Metered, measure};

use super::{Closed, read_packet};
use crate::{Iot, IotConfig};

#[global_allocator]
static ALLOC: Metered = Metered;

/// One broker runtime (an `Iot` over an SQLite store in a temporary folder) for every case.
fn broker() -> &'static (tokio::runtime::Runtime, Iot) {
    static BROKER: OnceLock<(tokio::runtime::Runtime, Iot)> = OnceLock::new();
    BROKER.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // One folder per test process; those of finished runs are removed.
        let tmp = std::env::temp_dir();
        for old in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = old.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("linli-broker-fuzz-")
                && !std::path::Path::new("/proc").join(pid).exists()
            {
                let _ = std::fs::remove_dir_all(old.path());
            }
        }
        let dir = tmp.join(format!("linli-broker-fuzz-{}", std::process::id()));
        let iot = rt.block_on(async {
            let cfg = linli_store::DbConfig {
                url: linli_store::sqlite_url(&dir),
                max_connections: 2,
                sqlite_synchronous: "NORMAL".into(),
            };
            // The tables the IoT runtime reads (this crate cannot see the server's module list).
            use linli_store::platform::{ModuleSchema, Platform};
            let schema = [
                ("platform", linli_store::migrations::PLATFORM),
                ("registry", linli_store::registry::schema::MIGRATIONS),
                ("notify", linli_store::notify::schema::MIGRATIONS),
                ("reports", linli_store::reports::schema::MIGRATIONS),
                ("iot", linli_store::iot::schema::MIGRATIONS),
                ("access", linli_store::access::schema::MIGRATIONS),
            ]
            .into_iter()
            .map(|(module, migrations)| ModuleSchema { module, migrations })
            .collect();
            let platform = std::sync::Arc::new(Platform {
                catalog: linli_core::auth::Catalog::build(&[linli_core::auth::KERNEL]).unwrap(),
                schema,
            });
            let store = linli_store::Store::open(&cfg, &dir, None, platform)
                .await
                .unwrap();
            Iot::start(store, IotConfig::default()).await.unwrap()
        });
        (rt, iot)
    })
}

/// A fixed header declaring `len` remaining bytes (the MQTT variable-length integer).
fn fixed_header(first: u8, mut len: u32) -> Vec<u8> {
    let mut v = vec![first];
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        v.push(b);
        if len == 0 {
            return v;
        }
    }
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn declared_packet_sizes_never_grow_the_buffer_past_the_limit(
        first in prop_oneof![Just(0x10u8), Just(0x30), Just(0x32), Just(0x82), any::<u8>()],
        declared in prop_oneof![0u32..200, 60_000u32..70_000, 0u32..268_435_455, Just(268_435_455)],
        body in proptest::collection::vec(any::<u8>(), 0..100_000),
        noise in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let (rt, iot) = broker();
        let max = iot.config().max_payload + 1024;
        let mut stream = fixed_header(first, declared);
        stream.extend_from_slice(&body);
        stream.extend_from_slice(&noise);
        let mut reader: &[u8] = &stream;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let (r, peak) = measure(64 << 20, || {
            rt.block_on(read_packet(iot, &mut reader, &mut buf, max, Some(Duration::from_secs(1))))
        });
        // The buffer, its growth by one read, and a parsed packet within the limit.
        prop_assert!(peak <= 4 * (max + 8192), "held {} bytes", peak);
        prop_assert!(buf.capacity() <= 2 * (max + 8192) + 16 * 1024, "buffer {}", buf.capacity());
        if declared as usize > max {
            // Refused from the header (or as malformed): no more than one read of it was taken.
            prop_assert!(matches!(r, Err(Closed::Protocol(_))));
            prop_assert!(stream.len() - reader.len() <= 16 * 1024 + 8192);
        }
    }
}
