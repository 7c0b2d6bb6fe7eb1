//! A visitor pass's QR code as a PNG image, for residents to save to the phone's photos or send
//! in a chat (phones' galleries and chat apps take PNG, not SVG). Grey-scale, 8 bits, each module
//! 8 × 8 pixels with the standard quiet zone of 4 modules; deflated with the same flate2 the
//! gzip responses use. Written here because the PNG format needs only three chunks.

use std::io::Write;

const SCALE: usize = 8;
const QUIET: usize = 4;

/// PNG bytes of `data` as a QR code (error correction M).
pub fn qr_png(data: &str) -> Option<Vec<u8>> {
    let code = qrcode::QrCode::with_error_correction_level(data, qrcode::EcLevel::M).ok()?;
    let modules = code.width();
    let dark = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    // Each row: filter byte 0 ("none"), then one grey byte per pixel.
    let mut raw = Vec::with_capacity(side * (side + 1));
    for y in 0..side {
        raw.push(0u8);
        let my = (y / SCALE).checked_sub(QUIET).filter(|m| *m < modules);
        for x in 0..side {
            let mx = (x / SCALE).checked_sub(QUIET).filter(|m| *m < modules);
            let is_dark = match (mx, my) {
                (Some(mx), Some(my)) => dark[my * modules + mx] == qrcode::Color::Dark,
                _ => false,
            };
            raw.push(if is_dark { 0 } else { 255 });
        }
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw).ok()?;
    let idat = z.finish().ok()?;
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&(side as u32).to_be_bytes());
    ihdr.extend_from_slice(&(side as u32).to_be_bytes());
    // bit depth 8, colour type 0 (grey), compression 0, filter 0, no interlace
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &idat);
    chunk(&mut png, b"IEND", &[]);
    Some(png)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chunk_checksum_is_png_s_crc32() {
        // The standard check value of CRC-32/ISO-HDLC for "123456789".
        let mut crc = flate2::Crc::new();
        crc.update(b"123456789");
        assert_eq!(crc.sum(), 0xCBF4_3926);
    }

    #[test]
    fn a_png_with_a_quiet_zone_and_dark_modules() {
        let png = qr_png("linli-pass-token").unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let side = u32::from_be_bytes(png[16..20].try_into().unwrap()) as usize;
        assert_eq!(side % SCALE, 0);
        assert!(side >= (21 + 2 * QUIET) * SCALE);
        let mut raw = Vec::new();
        let start = png.windows(4).position(|w| w == b"IDAT").unwrap();
        let len = u32::from_be_bytes(png[start - 4..start].try_into().unwrap()) as usize;
        std::io::Read::read_to_end(
            &mut flate2::read::ZlibDecoder::new(&png[start + 4..start + 4 + len]),
            &mut raw,
        )
        .unwrap();
        assert_eq!(raw.len(), side * (side + 1));
        // The quiet zone is white; the finder pattern's corner (module 0,0) is dark.
        assert_eq!(raw[1], 255);
        let row = QUIET * SCALE * (side + 1);
        assert_eq!(raw[row + 1 + QUIET * SCALE], 0);
    }
}
