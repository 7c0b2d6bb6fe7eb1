//! The map area of places (issue #4: Open311 reports located by a point). A community carries a
//! centre with a radius and, when known, a boundary polygon (WGS-84). [`Store::community_at`]
//! answers which community a point lies in: the smallest boundary containing it, else the
//! nearest centre whose radius reaches it, else none. The bounding box of each area is stored
//! so that lookup reads only the few rows whose box holds the point.
//!
//! Areas nest and do not overlap (issue #13 round 2, finding 4): a place's area — its boundary,
//! or the circle of its radius when it has none — lies inside the area of its nearest ancestor
//! that has one, holds the areas of its descendants, and shares at most a border with every
//! other place's area. Otherwise one committee could redraw its area over a neighbour's, and
//! reports placed by a point there would land in the wrong community. Checked in the writing
//! transaction, under a lock, so two neighbours redrawing at once cannot both pass.

use serde::{Deserialize, Serialize};

use linli_core::auth::{Action, Grant};
use linli_core::geo::{self, LatLon};
use linli_core::{AppError, AppResult};

use crate::Store;
use crate::audit::{Actor, Entry};
use crate::db::{Sql, db_err, i64_, opt_str, str_};

/// Largest radius accepted (metres): a community, not a district.
pub const MAX_RADIUS_M: i64 = 5_000;
/// Most boundary points accepted.
pub const MAX_BOUNDARY_POINTS: usize = 500;

/// A place's map area as entered and shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct PlaceGeo {
    /// Centre latitude / longitude (WGS-84 degrees).
    pub lat: f64,
    pub lon: f64,
    /// Metres around the centre that count as this place when no boundary contains a point.
    pub radius_m: i64,
    /// Boundary polygon as `[[lat, lon], …]` (at least 3 points), or empty.
    #[serde(default)]
    pub boundary: Vec<[f64; 2]>,
}

/// The community a point was found in.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommunityHit {
    pub place_id: String,
    pub name: String,
    pub path: String,
    /// `boundary` (inside the polygon) or `radius` (nearest centre within its radius).
    pub matched_by: String,
    /// Metres from the community's centre.
    pub distance_m: i64,
}

fn e6(v: f64) -> i64 {
    (v * 1e6).round() as i64
}

fn ring(b: &[[f64; 2]]) -> Vec<LatLon> {
    b.iter().map(|p| (p[0], p[1])).collect()
}

impl PlaceGeo {
    /// Validate: a real point, a sensible radius, a boundary of 3–500 valid points around it.
    pub fn validate(&self) -> AppResult<()> {
        let bad = |f: &str| AppError::bad_request("place.geo.invalid").arg("field", f.to_string());
        if !geo::valid((self.lat, self.lon)) {
            return Err(bad("lat"));
        }
        if !(1..=MAX_RADIUS_M).contains(&self.radius_m) {
            return Err(bad("radius_m"));
        }
        if !self.boundary.is_empty()
            && (self.boundary.len() < 3
                || self.boundary.len() > MAX_BOUNDARY_POINTS
                || self.boundary.iter().any(|p| !geo::valid((p[0], p[1])))
                || !geo::is_simple(&ring(&self.boundary)))
        {
            return Err(bad("boundary"));
        }
        if !self.boundary.is_empty() && !geo::contains(&ring(&self.boundary), (self.lat, self.lon))
        {
            return Err(AppError::bad_request("place.geo.centre_outside"));
        }
        Ok(())
    }

    /// The area as a polygon: the boundary, or the radius's circle (64 corners on it) when
    /// there is none.
    pub fn region(&self) -> Vec<LatLon> {
        if self.boundary.is_empty() {
            geo::circle((self.lat, self.lon), self.radius_m as f64, 64)
        } else {
            ring(&self.boundary)
        }
    }

    /// The bounding box (e6): the polygon's, widened to hold the radius circle too.
    fn bbox(&self) -> (i64, i64, i64, i64) {
        let dlat = self.radius_m as f64 / 111_000.0;
        let dlon = self.radius_m as f64 / (111_000.0 * self.lat.to_radians().cos().max(0.01));
        let mut b = (
            self.lat - dlat,
            self.lat + dlat,
            self.lon - dlon,
            self.lon + dlon,
        );
        for p in &self.boundary {
            b.0 = b.0.min(p[0]);
            b.1 = b.1.max(p[0]);
            b.2 = b.2.min(p[1]);
            b.3 = b.3.max(p[1]);
        }
        (e6(b.0), e6(b.1), e6(b.2), e6(b.3))
    }
}

impl Store {
    /// The map area of a place inside the grant's area (`None` when it has none).
    pub async fn place_geo(&self, grant: &Grant, place_id: &str) -> AppResult<Option<PlaceGeo>> {
        self.place(grant, place_id).await?;
        let row = sqlx::query(
            "SELECT lat_e6, lon_e6, radius_m, boundary FROM place_geo WHERE place_id = $1",
        )
        .bind(place_id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| PlaceGeo {
            lat: i64_(&r, "lat_e6") as f64 / 1e6,
            lon: i64_(&r, "lon_e6") as f64 / 1e6,
            radius_m: i64_(&r, "radius_m"),
            boundary: opt_str(&r, "boundary")
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or_default(),
        }))
    }

    /// Set (replace) the map area of a place inside a `PlaceWrite` grant; audited.
    pub async fn set_place_geo(
        &self,
        grant: &Grant,
        actor: &Actor,
        place_id: &str,
        g: PlaceGeo,
    ) -> AppResult<PlaceGeo> {
        grant.scope(Action::PlaceWrite)?;
        g.validate()?;
        let place = self.place(grant, place_id).await?;
        let before = self.place_geo(grant, place_id).await?;
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        // Areas are redrawn one at a time, and checked against the others as they are now.
        self.db
            .lock_xact(&mut tx, "registry.place_geo")
            .await
            .map_err(db_err)?;
        check_nesting(&mut tx, &place.id, &place.path, &g).await?;
        write_geo(&mut tx, self.now_ms(), place_id, &g).await?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "place.geo",
                entity: "place",
                entity_id: place_id,
                path: Some(&place.path),
                purpose: None,
                before: before.map(|b| serde_json::to_value(b).unwrap_or_default()),
                after: Some(serde_json::to_value(&g).unwrap_or_default()),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(g)
    }

    /// The community a point lies in, among communities with a map area (see the module doc).
    /// Not scoped: callers check the answer against the caller's area.
    pub async fn community_at(&self, lat: f64, lon: f64) -> AppResult<Option<CommunityHit>> {
        if !geo::valid((lat, lon)) {
            return Err(AppError::bad_request("validation.bad_value").arg("field", "lat"));
        }
        let (la, lo) = (e6(lat), e6(lon));
        let mut q = Sql::new(
            "SELECT g.place_id, g.lat_e6, g.lon_e6, g.radius_m, g.boundary, p.name, p.path FROM place_geo g JOIN places p ON p.id = g.place_id WHERE p.kind = 'community' AND g.min_lat_e6 <= ",
        );
        q.bind(la)
            .push(" AND g.max_lat_e6 >= ")
            .bind(la)
            .push(" AND g.min_lon_e6 <= ")
            .bind(lo)
            .push(" AND g.max_lon_e6 >= ")
            .bind(lo)
            .push(" ORDER BY g.place_id");
        let rows = q.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        let point = (lat, lon);
        let mut inside: Option<(f64, CommunityHit)> = None;
        let mut near: Option<CommunityHit> = None;
        for r in &rows {
            let centre = (
                i64_(r, "lat_e6") as f64 / 1e6,
                i64_(r, "lon_e6") as f64 / 1e6,
            );
            let d = geo::distance_m(point, centre);
            let boundary: Vec<[f64; 2]> = opt_str(r, "boundary")
                .and_then(|b| serde_json::from_str(&b).ok())
                .unwrap_or_default();
            let hit = |by: &str| CommunityHit {
                place_id: str_(r, "place_id"),
                name: str_(r, "name"),
                path: str_(r, "path"),
                matched_by: by.to_string(),
                distance_m: d.round() as i64,
            };
            let poly = ring(&boundary);
            if geo::contains(&poly, point) {
                // Nested areas: the smaller one is the more precise answer.
                let a = geo::area(&poly);
                if inside.as_ref().is_none_or(|(best, _)| a < *best) {
                    inside = Some((a, hit("boundary")));
                }
            } else if d <= i64_(r, "radius_m") as f64
                && near
                    .as_ref()
                    .is_none_or(|n| (d.round() as i64) < n.distance_m)
            {
                near = Some(hit("radius"));
            }
        }
        Ok(inside.map(|(_, h)| h).or(near))
    }

    /// Whether any community in these subtrees has a map area (so a point that matches none of
    /// them is an error, not a missing datum).
    pub async fn communities_have_geo(&self, prefixes: &[String]) -> AppResult<bool> {
        let mut q = Sql::new(
            "SELECT 1 AS x FROM place_geo g JOIN places p ON p.id = g.place_id WHERE p.kind = 'community' AND ",
        );
        q.scope("p.path", prefixes).push(" LIMIT 1");
        Ok(q.query()
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?
            .is_some())
    }

    /// Give the demo communities their map areas when they have none (idempotent).
    pub async fn seed_demo_geo(&self) -> AppResult<()> {
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        for a in linli_core::demo::COMMUNITY_AREAS {
            let row = sqlx::query(
                "SELECT p.id FROM places p LEFT JOIN place_geo g ON g.place_id = p.id WHERE p.kind = 'community' AND p.code = $1 AND g.place_id IS NULL",
            )
            .bind(a.code)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            if let Some(r) = row {
                let g = PlaceGeo {
                    lat: a.centre.0,
                    lon: a.centre.1,
                    radius_m: a.radius_m,
                    boundary: a.boundary.iter().map(|p| [p.0, p.1]).collect(),
                };
                write_geo(&mut tx, self.now_ms(), &str_(&r, "id"), &g).await?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }
}

fn geo_from_row(r: &sqlx::any::AnyRow) -> PlaceGeo {
    PlaceGeo {
        lat: i64_(r, "lat_e6") as f64 / 1e6,
        lon: i64_(r, "lon_e6") as f64 / 1e6,
        radius_m: i64_(r, "radius_m"),
        boundary: opt_str(r, "boundary")
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or_default(),
    }
}

/// Refuse an area for the place at `path` that leaves its nearest ancestor's area, leaves out a
/// descendant's, or overlaps any other place's (409, naming that place).
async fn check_nesting(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    place_id: &str,
    path: &str,
    g: &PlaceGeo,
) -> AppResult<()> {
    let region = g.region();
    let conflict = |code: &'static str, name: String| AppError::conflict(code).arg("place", name);
    // Ancestors (their paths start ours), descendants (ours starts theirs), and every other
    // area whose box meets ours.
    let (min_lat, max_lat, min_lon, max_lon) = g.bbox();
    let rows = sqlx::query(
        "SELECT g.place_id, g.lat_e6, g.lon_e6, g.radius_m, g.boundary, p.name, p.path FROM place_geo g JOIN places p ON p.id = g.place_id \
         WHERE g.place_id <> $1 AND (substr($2, 1, length(p.path)) = p.path \
            OR substr(p.path, 1, length($2)) = $2 \
            OR (g.min_lat_e6 <= $3 AND g.max_lat_e6 >= $4 AND g.min_lon_e6 <= $5 AND g.max_lon_e6 >= $6)) \
         ORDER BY p.path",
    )
    .bind(place_id.to_string())
    .bind(path.to_string())
    .bind(max_lat)
    .bind(min_lat)
    .bind(max_lon)
    .bind(min_lon)
    .fetch_all(&mut **tx)
    .await
    .map_err(db_err)?;
    let areas: Vec<(String, String, Vec<LatLon>)> = rows
        .iter()
        .map(|r| (str_(r, "path"), str_(r, "name"), geo_from_row(r).region()))
        .collect();
    // The deepest ancestor with an area is the one to lie inside (checked first: the most
    // basic rule); then the descendants, then everyone else.
    if let Some((_, name, theirs)) = areas
        .iter()
        .filter(|(other, _, _)| path.starts_with(other.as_str()))
        .max_by_key(|(other, _, _)| other.len())
        && !geo::within(&region, theirs)
    {
        return Err(conflict("place.geo.outside_parent", name.clone()));
    }
    for (other, name, theirs) in &areas {
        if path.starts_with(other.as_str()) {
            continue;
        }
        if other.starts_with(path) {
            if !geo::within(theirs, &region) {
                return Err(conflict("place.geo.child_outside", name.clone()));
            }
        } else if geo::overlaps(theirs, &region) {
            return Err(conflict("place.geo.overlaps", name.clone()));
        }
    }
    Ok(())
}

async fn write_geo(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    now: i64,
    place_id: &str,
    g: &PlaceGeo,
) -> AppResult<()> {
    let (min_lat, max_lat, min_lon, max_lon) = g.bbox();
    sqlx::query("DELETE FROM place_geo WHERE place_id = $1")
        .bind(place_id.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO place_geo (place_id, lat_e6, lon_e6, radius_m, boundary, min_lat_e6, max_lat_e6, min_lon_e6, max_lon_e6, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(place_id.to_string())
    .bind(e6(g.lat))
    .bind(e6(g.lon))
    .bind(g.radius_m)
    .bind((!g.boundary.is_empty()).then(|| serde_json::to_string(&g.boundary).unwrap_or_default()))
    .bind(min_lat)
    .bind(max_lat)
    .bind(min_lon)
    .bind(max_lon)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}
