//! Report photos: JPEG, PNG and WebP, recognised by their content (never by a file name or a
//! declared type), walked structurally, and rewritten without metadata — EXIF (with its GPS
//! position), XMP, IPTC and comments — before anything is stored. Files are written under
//! `<data_dir>/uploads/reports/` with generated names and fsynced before the row commits.
//!
//! A photo added after intake changes what the report shows: the report's version moves (a
//! page drawn before it is stale), and a published report (审核后展示) whose new photo comes
//! from someone who cannot moderate it leaves the neighbours' view until a dispatcher looks
//! again — a moderation approves what the moderator saw, nothing added later.

use std::io::Write;
use std::path::{Path, PathBuf};

use sqlx::{Any, Transaction};

use linli_core::auth::{Action, Principal};
use linli_core::{AppError, AppResult, ErrorKind, new_id};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{db_err, i64_, str_};
use crate::notify::Notice;

use super::Viewer;
use super::intake::{Created, NewReport};
use super::queries::PhotoMeta;

/// A photo added after intake: the report's title (for the notice) and whether the uploader
/// may moderate the report (their photo keeps their own approval).
struct Later<'a> {
    title: &'a str,
    can_moderate: bool,
}

/// Largest accepted image.
pub const MAX_PHOTO_BYTES: usize = 8 * 1024 * 1024;
/// Photos per report.
pub const MAX_PHOTOS: i64 = 9;

/// A report created with its photos ([`Store::create_report_with_photos`]).
#[derive(Debug, Clone)]
pub struct WithPhotos {
    pub created: Created,
    pub photos: Vec<PhotoMeta>,
    /// Photos that passed the checks but could not be written after the report committed.
    pub failed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
}

impl ImageKind {
    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Webp => "image/webp",
        }
    }
    pub fn ext(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            ImageKind::Png => "png",
            ImageKind::Webp => "webp",
        }
    }
}

fn bad() -> AppError {
    AppError::bad_request("report.photo_invalid")
}

/// Validate an image by content and return it without metadata.
pub fn sanitize(bytes: &[u8]) -> AppResult<(ImageKind, Vec<u8>)> {
    if bytes.len() > MAX_PHOTO_BYTES {
        return Err(
            AppError::new(ErrorKind::PayloadTooLarge, "payload_too_large")
                .arg("limit", format!("{} MB", MAX_PHOTO_BYTES / 1_048_576)),
        );
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok((ImageKind::Jpeg, jpeg(bytes)?));
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok((ImageKind::Png, png(bytes)?));
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok((ImageKind::Webp, webp(bytes)?));
    }
    Err(bad())
}

fn jpeg(b: &[u8]) -> AppResult<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&[0xFF, 0xD8]);
    let mut i = 2;
    let mut frame = false;
    let mut scan = false;
    loop {
        // Markers may be preceded by fill bytes.
        if i >= b.len() || b[i] != 0xFF {
            return Err(bad());
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1;
        }
        let m = *b.get(i).ok_or_else(bad)?;
        i += 1;
        match m {
            0xD9 => {
                if !frame || !scan {
                    return Err(bad());
                }
                out.extend_from_slice(&[0xFF, 0xD9]);
                return Ok(out);
            }
            0xD8 | 0x00 => return Err(bad()),
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&[0xFF, m]);
                continue;
            }
            _ => {}
        }
        let len = u16::from_be_bytes([*b.get(i).ok_or_else(bad)?, *b.get(i + 1).ok_or_else(bad)?])
            as usize;
        if len < 2 || i + len > b.len() {
            return Err(bad());
        }
        let seg = &b[i - 2..i + len];
        i += len;
        match m {
            // Application segments are kept only when they are about drawing the picture: JFIF
            // (APP0), an ICC profile (APP2) and Adobe's colour transform (APP14). EXIF/XMP (APP1),
            // C2PA/JUMBF manifests (APP11, may hold the location), IPTC (APP13), maker data and
            // comments are dropped.
            0xE0 | 0xE2 | 0xEE if jpeg_app_kept(m, seg) => out.extend_from_slice(seg),
            0xE0..=0xEF | 0xFE => {}
            0xC0..=0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF => {
                if len < 8 {
                    return Err(bad());
                }
                frame = true;
                out.extend_from_slice(seg);
            }
            0xDA => {
                if !frame {
                    return Err(bad());
                }
                scan = true;
                out.extend_from_slice(seg);
                // Entropy-coded data runs to the next marker that is not stuffing or RST.
                let start = i;
                loop {
                    if i + 1 >= b.len() {
                        return Err(bad());
                    }
                    if b[i] == 0xFF && b[i + 1] != 0x00 && !(0xD0..=0xD7).contains(&b[i + 1]) {
                        break;
                    }
                    i += 1;
                }
                out.extend_from_slice(&b[start..i]);
            }
            _ => out.extend_from_slice(seg),
        }
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            let mask = (!(crc & 1)).wrapping_add(1);
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// PNG chunks that draw the picture (critical chunks, transparency, colour, animation).
const PNG_KEPT: [&[u8]; 18] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"cICP", b"mDCV", b"cLLI", b"bKGD", b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

/// WebP chunks that draw the picture.
const WEBP_KEPT: [&[u8]; 7] = [
    b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
];

/// Whether a JPEG application segment (`seg` starts at the marker) only says how to draw.
fn jpeg_app_kept(marker: u8, seg: &[u8]) -> bool {
    let payload = seg.get(4..).unwrap_or_default();
    match marker {
        0xE0 => payload.starts_with(b"JFIF\0") || payload.starts_with(b"JFXX\0"),
        0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
        0xEE => payload.starts_with(b"Adobe"),
        _ => false,
    }
}

fn png(b: &[u8]) -> AppResult<Vec<u8>> {
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..8]);
    let mut i = 8;
    let mut first = true;
    let mut idat = false;
    loop {
        if i + 12 > b.len() {
            return Err(bad());
        }
        let len = u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
        let ty = &b[i + 4..i + 8];
        let end = i
            .checked_add(12)
            .and_then(|x| x.checked_add(len))
            .filter(|e| *e <= b.len())
            .ok_or_else(bad)?;
        let crc = u32::from_be_bytes([b[end - 4], b[end - 3], b[end - 2], b[end - 1]]);
        if crc32(&b[i + 4..end - 4]) != crc {
            return Err(bad());
        }
        if first && (ty != b"IHDR" || len != 13) {
            return Err(bad());
        }
        first = false;
        match ty {
            // Anything that is not needed to draw the picture (EXIF, text, time, C2PA `caBX`,
            // private chunks that may carry anything) is dropped.
            _ if !PNG_KEPT.contains(&ty) => {}
            b"IDAT" => {
                idat = true;
                out.extend_from_slice(&b[i..end]);
            }
            b"IEND" => {
                if !idat {
                    return Err(bad());
                }
                out.extend_from_slice(&b[i..end]);
                return Ok(out);
            }
            _ => out.extend_from_slice(&b[i..end]),
        }
        i = end;
    }
}

fn webp(b: &[u8]) -> AppResult<Vec<u8>> {
    let riff = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
    if riff < 4 || riff + 8 > b.len() || riff % 2 == 1 {
        return Err(bad());
    }
    let body = &b[12..riff + 8];
    // The kept chunks are copied straight into the output (never one allocation per chunk: a
    // file of empty chunks would cost many times its size), the RIFF size filled in at the end.
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
    let mut i = 0;
    let mut image = false;
    let mut first = true;
    while i < body.len() {
        if i + 8 > body.len() {
            return Err(bad());
        }
        let fourcc = &body[i..i + 4];
        let len = u32::from_le_bytes([body[i + 4], body[i + 5], body[i + 6], body[i + 7]]) as usize;
        let padded = len + (len & 1);
        let end = (i + 8)
            .checked_add(padded)
            .filter(|e| *e <= body.len())
            .ok_or_else(bad)?;
        if first && !matches!(fourcc, b"VP8 " | b"VP8L" | b"VP8X") {
            return Err(bad());
        }
        first = false;
        match fourcc {
            // EXIF, XMP and unknown chunks are dropped; only what draws the picture stays.
            _ if !WEBP_KEPT.contains(&fourcc) => {}
            b"VP8X" => {
                if len < 10 {
                    return Err(bad());
                }
                let at = out.len();
                out.extend_from_slice(&body[i..end]);
                // Clear the EXIF (0x08) and XMP (0x04) flags: those chunks are gone.
                out[at + 8] &= !0x0C;
            }
            b"VP8 " | b"VP8L" | b"ANMF" => {
                image = true;
                out.extend_from_slice(&body[i..end]);
            }
            _ => out.extend_from_slice(&body[i..end]),
        }
        i = end;
    }
    if !image {
        return Err(bad());
    }
    let size = (out.len() - 8) as u32;
    out[4..8].copy_from_slice(&size.to_le_bytes());
    Ok(out)
}

fn too_many_photos() -> AppError {
    AppError::bad_request("report.too_many_photos").arg("max", MAX_PHOTOS.to_string())
}

fn photo_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("uploads").join("reports")
}

/// Write a file durably: temporary name, fsync, rename, fsync the directory.
fn write_durable(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

impl Store {
    /// Attach a photo: the reporter (while it is open) or staff who may handle or dispatch it.
    pub async fn report_add_photo(
        &self,
        p: &Principal,
        data_dir: &Path,
        id: &str,
        bytes: &[u8],
    ) -> AppResult<PhotoMeta> {
        let viewer = self.report_viewer(p).await?;
        let r = self.visible_report(&viewer, id).await?;
        let staff = p.may(Action::ReportHandle, &r.path) || p.may(Action::ReportDispatch, &r.path);
        let own = r.reporter_user_id.as_deref() == Some(p.user_id())
            || r.household_id
                .as_ref()
                .is_some_and(|h| viewer.households.contains(h));
        if !staff && !own {
            return Err(AppError::forbidden());
        }
        if r.status == "closed" {
            return Err(AppError::conflict("report.illegal_transition"));
        }
        let (kind, clean) = sanitize(bytes)?;
        // A cheap early answer; the limit itself is checked where the photo is written.
        let n = sqlx::query("SELECT COUNT(*) AS n FROM report_photos WHERE report_id = $1")
            .bind(id.to_string())
            .fetch_one(&self.db.read)
            .await
            .map_err(db_err)?;
        if i64_(&n, "n") >= MAX_PHOTOS {
            return Err(too_many_photos());
        }
        let stage = if own && !staff { "intake" } else { "handling" };
        let later = Later {
            title: &r.title,
            can_moderate: p.may(Action::ReportDispatch, &r.path),
        };
        self.store_photo(p, data_dir, id, &r.path, stage, kind, clean, Some(later))
            .await
    }

    /// A report with the photos taken for it, all or nothing for the reporter: every photo is
    /// checked and cleaned ([`sanitize`]) and their number limited ([`MAX_PHOTOS`]) before the
    /// report is written, so a bad one (its 1-based position in the `photo` argument of the
    /// error) refuses the whole submission and nothing is stored. The cleaned photos are then
    /// attached at the `intake` stage. A photo that cannot be written after the report committed
    /// (disk or database failure) is logged and counted in `failed`; the report stands.
    pub async fn create_report_with_photos(
        &self,
        p: &Principal,
        data_dir: &Path,
        new: NewReport,
        photos: &[Vec<u8>],
    ) -> AppResult<WithPhotos> {
        if photos.len() as i64 > MAX_PHOTOS {
            return Err(too_many_photos());
        }
        let mut clean = Vec::with_capacity(photos.len());
        for (i, bytes) in photos.iter().enumerate() {
            clean.push(sanitize(bytes).map_err(|e| e.arg("photo", (i + 1).to_string()))?);
        }
        let created = self.create_report(p, new).await?;
        let mut metas = Vec::with_capacity(clean.len());
        let mut failed = 0;
        for (kind, bytes) in clean {
            let r = &created.report;
            match self
                .store_photo(p, data_dir, &r.id, &r.path, "intake", kind, bytes, None)
                .await
            {
                Ok(m) => metas.push(m),
                Err(e) => {
                    tracing::error!(report = %r.id, code = e.code, "attaching an intake photo");
                    failed += 1;
                }
            }
        }
        Ok(WithPhotos {
            created,
            photos: metas,
            failed,
        })
    }

    /// Write a cleaned photo and its row (audited), then tell the report's listeners. A photo
    /// added after intake (`later`) moves the report's version and may withdraw its
    /// publication (see the module doc), in the same transaction.
    #[allow(clippy::too_many_arguments)]
    async fn store_photo(
        &self,
        p: &Principal,
        data_dir: &Path,
        id: &str,
        report_path: &str,
        stage: &str,
        kind: ImageKind,
        clean: Vec<u8>,
        later: Option<Later<'_>>,
    ) -> AppResult<PhotoMeta> {
        let photo_id = new_id();
        let file_name = format!("{photo_id}.{}", kind.ext());
        let dir = photo_dir(data_dir);
        let clean_len = clean.len();
        let sha = linli_core::crypto::sha256_hex(&clean);
        let dir2 = dir.clone();
        let name2 = file_name.clone();
        let path = tokio::task::spawn_blocking(move || write_durable(&dir2, &name2, &clean))
            .await
            .map_err(|_| AppError::internal())?
            .map_err(|e| {
                tracing::error!(error = %e, "writing report photo");
                AppError::internal()
            })?;
        let now = self.now_ms();
        let result: AppResult<()> = async {
            let mut tx = self.db.begin_write().await.map_err(db_err)?;
            // The limit is counted under the report's row lock, inside the transaction that
            // writes: uploads racing each other queue here, and each sees the ones before it.
            let locked = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT status FROM reports WHERE id = $1{}",
                self.backend().for_update()
            )))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or_else(|| AppError::not_found("report.not_found"))?;
            if later.is_some() && str_(&locked, "status") == "closed" {
                return Err(AppError::conflict("report.illegal_transition"));
            }
            let n = sqlx::query("SELECT COUNT(*) AS n FROM report_photos WHERE report_id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            if i64_(&n, "n") >= MAX_PHOTOS {
                return Err(too_many_photos());
            }
            sqlx::query("INSERT INTO report_photos (id, report_id, stage, file_name, mime, bytes, sha256, uploaded_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
                .bind(photo_id.clone())
                .bind(id.to_string())
                .bind(stage.to_string())
                .bind(file_name.clone())
                .bind(kind.mime())
                .bind(clean_len as i64)
                .bind(sha.clone())
                .bind(p.user_id().to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            self.audit(
                &mut tx,
                &Actor::from(p),
                Entry {
                    action: "report.photo_add",
                    entity: "report",
                    entity_id: id,
                    path: Some(report_path),
                    purpose: None,
                    before: None,
                    after: Some(serde_json::json!({ "photo_id": photo_id, "mime": kind.mime(), "bytes": clean_len, "sha256": sha })),
                },
            )
            .await?;
            if let Some(later) = &later {
                self.photo_changes_report(&mut tx, id, report_path, &photo_id, later, now)
                    .await?;
            }
            tx.commit().await.map_err(db_err)
        }
        .await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        self.publish_report("photo", id, report_path);
        Ok(PhotoMeta {
            id: photo_id,
            stage: stage.into(),
            mime: kind.mime().into(),
            bytes: clean_len as i64,
            created_at: now,
        })
    }

    /// A photo was added to report `id` after intake: its version moves; if it was published
    /// and the uploader cannot moderate it, it is unpublished (a `moderate` event by the
    /// system, audited) and its dispatchers are asked to look again.
    #[allow(clippy::too_many_arguments)]
    async fn photo_changes_report(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
        report_path: &str,
        photo_id: &str,
        later: &Later<'_>,
        now: i64,
    ) -> AppResult<()> {
        let withdrawn = if later.can_moderate {
            None
        } else {
            sqlx::query(
                "UPDATE reports SET public_approved = 0, version = version + 1, updated_at = $1 WHERE id = $2 AND public_approved = 1 RETURNING status",
            )
            .bind(now)
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?
        };
        let Some(row) = withdrawn else {
            sqlx::query("UPDATE reports SET version = version + 1, updated_at = $1 WHERE id = $2")
                .bind(now)
                .bind(id.to_string())
                .execute(&mut **tx)
                .await
                .map_err(db_err)?;
            return Ok(());
        };
        let status = str_(&row, "status");
        let actor = Actor::system("moderation");
        let data =
            serde_json::json!({ "public": false, "reason": "new_photo", "photo_id": photo_id });
        super::actions::insert_event(
            tx,
            id,
            "moderate",
            Some(&status),
            &status,
            &actor,
            now,
            None,
            None,
            data.clone(),
        )
        .await?;
        self.audit(
            tx,
            &actor,
            Entry {
                action: "report.moderate",
                entity: "report",
                entity_id: id,
                path: Some(report_path),
                purpose: None,
                before: Some(serde_json::json!({ "public": true })),
                after: Some(data),
            },
        )
        .await?;
        let dispatchers = self.report_dispatchers(tx, report_path).await?;
        let link = format!("/reports/{id}");
        self.notify(
            tx,
            &dispatchers,
            &Notice {
                kind: "report.moderate",
                key: "notice-report-moderate-again",
                args: serde_json::json!({ "title": later.title, "status": status }),
                entity: "report",
                entity_id: id,
                path: Some(report_path),
                link: Some(&link),
            },
        )
        .await?;
        Ok(())
    }

    /// A photo's type and bytes, for a viewer who may see the report.
    pub async fn report_photo(
        &self,
        v: &Viewer,
        data_dir: &Path,
        id: &str,
        photo_id: &str,
    ) -> AppResult<(String, Vec<u8>)> {
        self.visible_report(v, id).await?;
        let row = sqlx::query(
            "SELECT file_name, mime FROM report_photos WHERE id = $1 AND report_id = $2",
        )
        .bind(photo_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?
        .ok_or_else(|| AppError::not_found("report.photo_not_found"))?;
        let path = photo_dir(data_dir).join(str_(&row, "file_name"));
        let bytes = tokio::fs::read(&path).await.map_err(|e| {
            tracing::error!(error = %e, path = %path.display(), "reading report photo");
            AppError::not_found("report.photo_not_found")
        })?;
        Ok((str_(&row, "mime"), bytes))
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A minimal baseline JPEG (1×1) with an EXIF segment carrying a GPS tag marker.
    pub fn jpeg_with_exif() -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        let exif = b"Exif\0\0GPSLatitude=30.59";
        v.extend_from_slice(&[0xFF, 0xE1]);
        v.extend_from_slice(&((exif.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(exif);
        // SOF0: precision 8, 1x1, 1 component.
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x0B, 8, 0, 1, 0, 1, 1, 1, 0x11, 0]);
        // SOS: 1 component.
        v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x08, 1, 1, 0, 0, 0x3F, 0]);
        v.extend_from_slice(&[0x12, 0x34, 0xFF, 0x00, 0x56]);
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    fn chunk(ty: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(ty);
        c.extend_from_slice(data);
        let mut crc_in = ty.to_vec();
        crc_in.extend_from_slice(data);
        c.extend_from_slice(&crc32(&crc_in).to_be_bytes());
        c
    }

    pub fn png_with_exif() -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
        v.extend(chunk(b"eXIf", b"MM\0*GPS"));
        v.extend(chunk(b"IDAT", &[0x78, 0x9C, 0x63, 0, 0, 0, 1, 0, 1]));
        v.extend(chunk(b"IEND", &[]));
        v
    }

    #[test]
    fn crc_matches_the_png_reference() {
        assert_eq!(crc32(b"IEND"), 0xAE42_6082);
    }

    #[test]
    fn jpeg_exif_is_removed_and_structure_checked() {
        let (k, clean) = sanitize(&jpeg_with_exif()).unwrap();
        assert_eq!(k, ImageKind::Jpeg);
        assert!(!clean.windows(4).any(|w| w == b"Exif"));
        assert!(clean.ends_with(&[0xFF, 0xD9]));
        // Truncated: no EOI.
        let mut cut = jpeg_with_exif();
        cut.truncate(cut.len() - 2);
        assert!(sanitize(&cut).is_err());
        assert!(sanitize(b"\xFF\xD8\xFFnot really a jpeg").is_err());
    }

    #[test]
    fn only_segments_and_chunks_that_draw_the_picture_are_kept() {
        // PNG: a C2PA manifest (may hold the location) and a private chunk go; sRGB stays.
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]));
        v.extend(chunk(b"sRGB", &[0]));
        v.extend(chunk(b"caBX", b"c2pa GPSLatitude"));
        v.extend(chunk(b"prVt", b"<html><script>alert(1)</script>"));
        v.extend(chunk(b"IDAT", &[0x78, 0x9C, 0x63, 0, 0, 0, 1, 0, 1]));
        v.extend(chunk(b"IEND", &[]));
        let (_, clean) = sanitize(&v).unwrap();
        assert!(clean.windows(4).any(|w| w == b"sRGB"));
        for gone in [&b"caBX"[..], b"prVt", b"GPS", b"script"] {
            assert!(!clean.windows(gone.len()).any(|w| w == gone));
        }
        // JPEG: APP11 (JUMBF/C2PA) and APP15 go; JFIF (APP0) stays.
        let src = jpeg_with_exif();
        let mut j = src[..2].to_vec();
        for (marker, payload) in [
            (0xE0u8, &b"JFIF\0\x01\x02\0\0\x01\0\x01\0\0"[..]),
            (0xEB, b"JP\0\0c2pa GPSLatitude"),
            (0xEF, b"maker <script>"),
        ] {
            j.extend_from_slice(&[0xFF, marker]);
            j.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
            j.extend_from_slice(payload);
        }
        j.extend_from_slice(&src[2..]);
        let (_, clean) = sanitize(&j).unwrap();
        assert!(clean.windows(4).any(|w| w == b"JFIF"));
        for gone in [&b"c2pa"[..], b"GPS", b"script", b"Exif"] {
            assert!(!clean.windows(gone.len()).any(|w| w == gone));
        }
    }

    #[test]
    fn png_exif_is_removed_and_crc_checked() {
        let (k, clean) = sanitize(&png_with_exif()).unwrap();
        assert_eq!(k, ImageKind::Png);
        assert!(!clean.windows(4).any(|w| w == b"eXIf"));
        let mut broken = png_with_exif();
        let n = broken.len();
        broken[n - 20] ^= 0xFF;
        assert!(sanitize(&broken).is_err());
    }

    #[test]
    fn webp_exif_is_removed() {
        let mut body = b"WEBP".to_vec();
        let mut vp8x = b"VP8X".to_vec();
        vp8x.extend_from_slice(&10u32.to_le_bytes());
        vp8x.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        body.extend(vp8x);
        let mut exif = b"EXIF".to_vec();
        exif.extend_from_slice(&4u32.to_le_bytes());
        exif.extend_from_slice(b"GPS!");
        body.extend(exif);
        let mut vp8l = b"VP8L".to_vec();
        vp8l.extend_from_slice(&6u32.to_le_bytes());
        vp8l.extend_from_slice(&[0x2F, 0, 0, 0, 0, 0]);
        body.extend(vp8l);
        let mut v = b"RIFF".to_vec();
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend(body);
        let (k, clean) = sanitize(&v).unwrap();
        assert_eq!(k, ImageKind::Webp);
        assert!(!clean.windows(4).any(|w| w == b"EXIF"));
        assert_eq!(clean[20] & 0x08, 0);
        assert_eq!(
            u32::from_le_bytes([clean[4], clean[5], clean[6], clean[7]]) as usize,
            clean.len() - 8
        );
    }

    #[test]
    fn other_content_and_oversize_are_refused() {
        assert!(sanitize(b"GIF89a....").is_err());
        assert!(sanitize(&vec![0u8; MAX_PHOTO_BYTES + 1]).is_err());
    }
}

/// Property-based fuzzing of the photo sanitizer: arbitrary bytes, mutated valid images and
/// valid images with metadata spliced in. Whatever comes in, `sanitize` answers without
/// panicking; whatever it accepts comes out as the same type, structurally free of EXIF, XMP,
/// IPTC and text metadata (checked by an independent walker below), and sanitizing it again
/// changes nothing. Cases: 256 per property, `PROPTEST_CASES` for longer runs (`.ci/run`).
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    fn cases() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            ..ProptestConfig::default()
        }
    }

    fn jpeg_segment(marker: u8, data: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
        s.extend_from_slice(data);
        s
    }

    fn png_chunk(ty: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(ty);
        c.extend_from_slice(data);
        let mut crc_in = ty.to_vec();
        crc_in.extend_from_slice(data);
        c.extend_from_slice(&crc32(&crc_in).to_be_bytes());
        c
    }

    fn webp_chunk(ty: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = ty.to_vec();
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    /// A clean image as its parts (the first part is the file header or first chunk; metadata
    /// may be spliced in between any two parts after it), of each kind.
    fn clean_parts(kind: ImageKind) -> Vec<Vec<u8>> {
        match kind {
            ImageKind::Jpeg => vec![
                vec![0xFF, 0xD8],
                jpeg_segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"),
                jpeg_segment(0xDB, &[0; 65]),
                jpeg_segment(0xC2, &[8, 0, 1, 0, 1, 1, 1, 0x11, 0]),
                // First scan, a restart marker inside, stuffed 0xFF 0x00.
                [
                    jpeg_segment(0xDA, &[1, 1, 0, 0, 0, 0]),
                    vec![0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD0, 0x56],
                ]
                .concat(),
                jpeg_segment(0xC4, &[0x10; 17]),
                [jpeg_segment(0xDA, &[1, 1, 0, 1, 0x3F, 0]), vec![0x78, 0x9A]].concat(),
                vec![0xFF, 0xD9],
            ],
            ImageKind::Png => vec![
                b"\x89PNG\r\n\x1a\n".to_vec(),
                png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 0, 0, 0, 0]),
                png_chunk(b"gAMA", &[0, 0, 0xB1, 0x8F]),
                png_chunk(b"IDAT", &[0x78, 0x9C, 0x63, 0, 0]),
                png_chunk(b"IDAT", &[0, 1, 0, 1]),
                png_chunk(b"IEND", &[]),
            ],
            ImageKind::Webp => vec![
                webp_chunk(b"VP8X", &[0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
                webp_chunk(b"ALPH", &[0, 1, 2]),
                webp_chunk(b"VP8L", &[0x2F, 0, 0, 0, 0, 0]),
            ],
        }
    }

    /// Metadata of each kind carrying a position, as the parts a camera or editor writes.
    fn metadata(kind: ImageKind, which: u8, payload: &[u8]) -> Vec<u8> {
        let gps = [
            b"GPSLatitude=30.5928;GPSLongitude=114.3055;".as_slice(),
            payload,
        ]
        .concat();
        match (kind, which % 4) {
            (ImageKind::Jpeg, 0) => {
                jpeg_segment(0xE1, &[b"Exif\0\0MM\0*".as_slice(), &gps].concat())
            }
            (ImageKind::Jpeg, 1) => jpeg_segment(
                0xE1,
                &[
                    b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta>".as_slice(),
                    &gps,
                ]
                .concat(),
            ),
            (ImageKind::Jpeg, 2) => {
                jpeg_segment(0xED, &[b"Photoshop 3.0\08BIM".as_slice(), &gps].concat())
            }
            (ImageKind::Jpeg, _) => jpeg_segment(0xFE, &gps),
            (ImageKind::Png, 0) => png_chunk(b"eXIf", &[b"MM\0*".as_slice(), &gps].concat()),
            (ImageKind::Png, 1) => png_chunk(
                b"iTXt",
                &[b"XML:com.adobe.xmp\0\0\0\0\0".as_slice(), &gps].concat(),
            ),
            (ImageKind::Png, 2) => png_chunk(b"tEXt", &[b"Comment\0".as_slice(), &gps].concat()),
            (ImageKind::Png, _) => {
                png_chunk(b"zTXt", &[b"Raw profile\0\0".as_slice(), &gps].concat())
            }
            (ImageKind::Webp, 0 | 2) => webp_chunk(b"EXIF", &[b"MM\0*".as_slice(), &gps].concat()),
            (ImageKind::Webp, _) => {
                webp_chunk(b"XMP ", &[b"<x:xmpmeta>".as_slice(), &gps].concat())
            }
        }
    }

    /// Where metadata may go: after the header part (PNG: also after IHDR, which must be first),
    /// before the last part (JPEG EOI, PNG IEND, WebP image data).
    fn splice_at(kind: ImageKind, parts: &[Vec<u8>], at: usize) -> usize {
        let first = if kind == ImageKind::Png { 2 } else { 1 };
        first + at % (parts.len() - first)
    }

    /// Put parts together into a file (WebP: inside the RIFF header).
    fn assemble(kind: ImageKind, parts: &[Vec<u8>]) -> Vec<u8> {
        let body = parts.concat();
        match kind {
            ImageKind::Webp => {
                let mut v = b"RIFF".to_vec();
                v.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
                v.extend_from_slice(b"WEBP");
                v.extend(body);
                v
            }
            _ => body,
        }
    }

    /// The segment / chunk types of an image, walked independently of the sanitizer; `None`
    /// when the structure does not hold together.
    fn structure(kind: ImageKind, b: &[u8]) -> Option<Vec<Vec<u8>>> {
        let mut types = Vec::new();
        match kind {
            ImageKind::Jpeg => {
                let mut i = 2;
                loop {
                    while *b.get(i)? == 0xFF && *b.get(i + 1)? == 0xFF {
                        i += 1;
                    }
                    if *b.get(i)? != 0xFF {
                        return None;
                    }
                    let m = *b.get(i + 1)?;
                    i += 2;
                    types.push(vec![m]);
                    match m {
                        0xD9 => return (i == b.len()).then_some(types),
                        0x01 | 0xD0..=0xD7 => continue,
                        _ => {}
                    }
                    let len = u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]) as usize;
                    i += len;
                    if m == 0xDA {
                        while !(b.get(i)? == &0xFF && !matches!(b.get(i + 1)?, 0x00 | 0xD0..=0xD7))
                        {
                            i += 1;
                        }
                    }
                }
            }
            ImageKind::Png => {
                let mut i = 8;
                while i < b.len() {
                    let len = u32::from_be_bytes(b.get(i..i + 4)?.try_into().ok()?) as usize;
                    types.push(b.get(i + 4..i + 8)?.to_vec());
                    i = i.checked_add(12 + len)?;
                }
                (i == b.len() && types.last()? == b"IEND").then_some(types)
            }
            ImageKind::Webp => {
                let riff = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?) as usize;
                if riff + 8 != b.len() || b.get(8..12)? != b"WEBP" {
                    return None;
                }
                let mut i = 12;
                while i < b.len() {
                    let ty = b.get(i..i + 4)?;
                    let len = u32::from_le_bytes(b.get(i + 4..i + 8)?.try_into().ok()?) as usize;
                    if ty == b"VP8X" {
                        // The EXIF and XMP flags must not promise chunks that are gone.
                        types.push([ty, &[b.get(i + 8)? & 0x0C]].concat());
                    } else {
                        types.push(ty.to_vec());
                    }
                    i += 8 + len + (len & 1);
                }
                (i == b.len()).then_some(types)
            }
        }
    }

    fn is_metadata(kind: ImageKind, ty: &[u8]) -> bool {
        match kind {
            ImageKind::Jpeg => matches!(ty, [0xE1] | [0xED] | [0xFE]),
            ImageKind::Png => matches!(ty, b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME"),
            ImageKind::Webp => {
                ty == b"EXIF" || ty == b"XMP " || (ty.starts_with(b"VP8X") && ty[4] != 0)
            }
        }
    }

    /// What must hold for anything `sanitize` accepts.
    fn check_output(input: &[u8], kind: ImageKind, out: &[u8]) -> Result<(), TestCaseError> {
        let magic_kind = if input.starts_with(&[0xFF, 0xD8, 0xFF]) {
            ImageKind::Jpeg
        } else if input.starts_with(b"\x89PNG") {
            ImageKind::Png
        } else {
            ImageKind::Webp
        };
        prop_assert_eq!(kind, magic_kind);
        let types = structure(kind, out);
        prop_assert!(types.is_some(), "output of kind {:?} does not walk", kind);
        for ty in types.unwrap() {
            prop_assert!(
                !is_metadata(kind, &ty),
                "metadata {:?} left in {:?}",
                ty,
                kind
            );
        }
        // The output is a valid image of the same type, already clean.
        let again = sanitize(out);
        prop_assert!(again.is_ok(), "output refused on a second pass");
        let (k2, out2) = again.unwrap();
        prop_assert_eq!(k2, kind);
        prop_assert_eq!(out2, out.to_vec());
        Ok(())
    }

    fn any_kind() -> impl Strategy<Value = ImageKind> {
        prop_oneof![
            Just(ImageKind::Jpeg),
            Just(ImageKind::Png),
            Just(ImageKind::Webp)
        ]
    }

    /// Changes to a file: flip a byte, insert bytes, delete a run, truncate.
    #[derive(Debug, Clone)]
    enum Mutation {
        Set(usize, u8),
        Insert(usize, Vec<u8>),
        Delete(usize, usize),
        Truncate(usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
            2 => (any::<usize>(), proptest::collection::vec(
                prop_oneof![Just(0xFFu8), Just(0x00), Just(0xD9), Just(0xDA), Just(0xE1), any::<u8>()], 1..8))
                .prop_map(|(i, v)| Mutation::Insert(i, v)),
            2 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
            1 => any::<usize>().prop_map(Mutation::Truncate),
        ]
    }

    fn apply(mut b: Vec<u8>, ms: &[Mutation]) -> Vec<u8> {
        for m in ms {
            let n = b.len().max(1);
            match m {
                Mutation::Set(i, v) => {
                    if !b.is_empty() {
                        b[i % n] = *v;
                    }
                }
                Mutation::Insert(i, v) => {
                    let at = i % (b.len() + 1);
                    b.splice(at..at, v.iter().copied());
                }
                Mutation::Delete(i, k) => {
                    let at = i % n;
                    let end = (at + k).min(b.len());
                    if at < end {
                        b.drain(at..end);
                    }
                }
                Mutation::Truncate(i) => b.truncate(i % n),
            }
        }
        b
    }

    proptest! {
        #![proptest_config(cases())]

        #[test]
        fn arbitrary_bytes_are_refused_or_come_out_clean(
            prefix in prop_oneof![
                Just(vec![0xFF, 0xD8, 0xFF]),
                Just(b"\x89PNG\r\n\x1a\n".to_vec()),
                Just(b"RIFF\x20\0\0\0WEBPVP8X".to_vec()),
                Just(Vec::new()),
            ],
            rest in proptest::collection::vec(any::<u8>(), 0..1024),
        ) {
            let input = [prefix, rest].concat();
            if let Ok((kind, out)) = sanitize(&input) {
                check_output(&input, kind, &out)?;
            }
        }

        #[test]
        fn mutated_images_are_refused_or_come_out_clean(
            kind in any_kind(),
            meta in proptest::collection::vec((any::<u8>(), any::<usize>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..4),
            ms in proptest::collection::vec(mutation(), 1..6),
        ) {
            let mut parts = clean_parts(kind);
            for (which, at, payload) in &meta {
                let at = splice_at(kind, &parts, *at);
                parts.insert(at, metadata(kind, *which, payload));
            }
            let input = apply(assemble(kind, &parts), &ms);
            if let Ok((k, out)) = sanitize(&input) {
                check_output(&input, k, &out)?;
            }
        }

        #[test]
        fn spliced_metadata_is_removed_exactly(
            kind in any_kind(),
            meta in proptest::collection::vec((any::<u8>(), any::<usize>(), proptest::collection::vec(any::<u8>(), 0..200)), 1..5),
        ) {
            let clean = assemble(kind, &clean_parts(kind));
            let mut parts = clean_parts(kind);
            for (which, at, payload) in &meta {
                let at = splice_at(kind, &parts, *at);
                parts.insert(at, metadata(kind, *which, payload));
            }
            if kind == ImageKind::Webp {
                // The extended header announces the EXIF and XMP chunks.
                parts[0][8] |= 0x0C;
            }
            let with_meta = assemble(kind, &parts);
            let (k, out) = sanitize(&with_meta).expect("a valid image with metadata is accepted");
            check_output(&with_meta, k, &out)?;
            // Exactly the metadata is gone: the result is the clean image, byte for byte.
            let (_, from_clean) = sanitize(&clean).expect("the clean image is accepted");
            prop_assert_eq!(&out, &from_clean);
            prop_assert_eq!(out, clean);
        }
    }
}

/// Memory bound of the photo sanitizer, measured with the counting allocator installed in this
/// crate's test binary. Photos are walked and rewritten, never decoded: no pixel buffer is made,
/// so a header declaring 2³¹ × 2³¹ pixels costs nothing, and the output is never larger than
/// the input. Inputs here are up to the 8 MB upload limit, built to make as many pieces as
/// possible (empty chunks and segments, fill bytes, restart markers) or to declare huge sizes.
#[cfg(test)]
mod fuzz_memory {
    use proptest::prelude::*;

    use linli_core::alloc_meter::{Metered, measure};

    use super::*;

    #[global_allocator]
    static ALLOC: Metered = Metered;

    fn cases() -> ProptestConfig {
        ProptestConfig {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(256),
            ..ProptestConfig::default()
        }
    }

    fn png_chunk(ty: &[u8], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(ty);
        c.extend_from_slice(data);
        let mut crc_in = ty.to_vec();
        crc_in.extend_from_slice(data);
        c.extend_from_slice(&crc32(&crc_in).to_be_bytes());
        c
    }

    /// Adversarial images of about `size` bytes.
    fn hostile(kind: u8, size: usize, w: u32, h: u32) -> Vec<u8> {
        match kind {
            // PNG: huge declared dimensions, then many empty kept and dropped chunks.
            0 => {
                let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
                let mut ihdr = w.to_be_bytes().to_vec();
                ihdr.extend_from_slice(&h.to_be_bytes());
                ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
                v.extend(png_chunk(b"IHDR", &ihdr));
                let idat = png_chunk(b"IDAT", &[]);
                let text = png_chunk(b"tEXt", &[]);
                while v.len() + 24 < size {
                    v.extend_from_slice(&idat);
                    v.extend_from_slice(&text);
                }
                v.extend(png_chunk(b"IEND", &[]));
                v
            }
            // JPEG: a 65535 × 65535 frame, then restart markers and fill bytes.
            1 => {
                let mut v = vec![0xFF, 0xD8];
                let mut sof = vec![0xFF, 0xC0, 0, 11, 8];
                sof.extend_from_slice(&(w as u16).to_be_bytes());
                sof.extend_from_slice(&(h as u16).to_be_bytes());
                sof.extend_from_slice(&[1, 1, 0x11, 0]);
                v.extend(sof);
                v.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0x3F, 0]);
                while v.len() + 4 < size {
                    v.extend_from_slice(&[0xFF, 0xD0, 0xFF, 0xFF]);
                }
                v.extend_from_slice(&[0xFF, 0xD9]);
                v
            }
            // WebP: a 2^24 × 2^24 canvas, then many empty kept chunks.
            _ => {
                let mut body = b"VP8X".to_vec();
                body.extend_from_slice(&10u32.to_le_bytes());
                body.extend_from_slice(&[0x3C, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
                body.extend_from_slice(b"VP8L\0\0\0\0");
                while body.len() + 8 < size {
                    body.extend_from_slice(b"ALPH\0\0\0\0");
                }
                let mut v = b"RIFF".to_vec();
                v.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
                v.extend_from_slice(b"WEBP");
                v.extend(body);
                v
            }
        }
    }

    /// Clean `bytes`, checking the output and the peak: the output (never more than the input)
    /// and nothing per piece.
    fn check(bytes: &[u8]) -> Result<(), String> {
        let (r, peak) = measure(64 << 20, || sanitize(bytes));
        if let Ok((_, clean)) = &r
            && clean.len() > bytes.len()
        {
            return Err(format!("{} bytes out of {}", clean.len(), bytes.len()));
        }
        if peak > bytes.len() + 64 * 1024 {
            return Err(format!("held {peak} bytes for {}", bytes.len()));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(cases())]

        /// Run 5,000 times in CI, so small; `largest_photos_are_cleaned_within_twice_their_size`
        /// takes the same shapes at the 8 MB limit.
        #[test]
        fn photos_are_cleaned_within_twice_their_size(
            kind in 0u8..3,
            size in prop_oneof![0usize..4096, 0usize..64 * 1024],
            w in prop_oneof![Just(u32::MAX >> 1), any::<u32>(), 1u32..64],
            h in prop_oneof![Just(u32::MAX >> 1), any::<u32>(), 1u32..64],
        ) {
            let bytes = hostile(kind, size, w, h);
            prop_assert!(check(&bytes).is_ok(), "{:?}", check(&bytes));
        }
    }

    #[test]
    fn largest_photos_are_cleaned_within_twice_their_size() {
        for kind in 0..3 {
            let bytes = hostile(kind, MAX_PHOTO_BYTES, u32::MAX >> 1, u32::MAX >> 1);
            check(&bytes).unwrap();
        }
    }
}
