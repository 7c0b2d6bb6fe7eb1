//! Plane geometry for community areas: is a WGS-84 point inside a boundary polygon, how far is
//! it from a centre. Community areas are a few hundred metres across, so treating latitude and
//! longitude as plane coordinates inside one polygon is exact enough.

/// A point as (latitude, longitude) in degrees.
pub type LatLon = (f64, f64);

/// Whether `p` lies inside `polygon` (even–odd rule; the ring may or may not repeat its first
/// point). Points exactly on an edge may fall either way.
pub fn contains(polygon: &[LatLon], p: LatLon) -> bool {
    if polygon.len() < 3 {
        return false;
    }
    let (y, x) = p;
    let mut inside = false;
    let mut j = polygon.len() - 1;
    for i in 0..polygon.len() {
        let (yi, xi) = polygon[i];
        let (yj, xj) = polygon[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Great-circle distance in metres (haversine).
pub fn distance_m(a: LatLon, b: LatLon) -> f64 {
    let r = 6_371_000.0;
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dp = (b.0 - a.0).to_radians();
    let dl = (b.1 - a.1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * r * h.sqrt().asin()
}

/// A valid WGS-84 point: finite, latitude within ±90, longitude within ±180.
pub fn valid(p: LatLon) -> bool {
    p.0.is_finite() && p.1.is_finite() && p.0.abs() <= 90.0 && p.1.abs() <= 180.0
}

/// The polygon's area in square degrees (shoelace), to prefer the smaller of nested areas.
pub fn area(polygon: &[LatLon]) -> f64 {
    let n = polygon.len();
    if n < 3 {
        return 0.0;
    }
    let mut s = 0.0;
    for i in 0..n {
        let (y1, x1) = polygon[i];
        let (y2, x2) = polygon[(i + 1) % n];
        s += x1 * y2 - x2 * y1;
    }
    (s / 2.0).abs()
}

// ---- Areas against each other: nesting and overlap ----------------------------------------
//
// Places' map areas must nest (a child inside its parent) and must not overlap (neighbours
// share at most a border). Both questions are answered exactly for simple polygons, shared
// edges and corners included: an edge crossing another edge properly settles it; otherwise the
// edges are cut where the other polygon's corners touch them, and a point just inside (or just
// outside) each piece, a hair's breadth from its middle, is tested against the other polygon.
// Such a point is never on a border unless an area is thinner than the hair (1e-8 degrees,
// about a millimetre).

const HAIR: f64 = 1e-8;
const TOUCH: f64 = 1e-10;

fn sub(a: LatLon, b: LatLon) -> (f64, f64) {
    (a.0 - b.0, a.1 - b.1)
}

fn cross(u: (f64, f64), v: (f64, f64)) -> f64 {
    u.0 * v.1 - u.1 * v.0
}

/// Which side of the line a→b the point c lies on (+1 left, −1 right, 0 on it), in (lon, lat)
/// as x, y.
fn side(a: LatLon, b: LatLon, c: LatLon) -> i8 {
    // Points are (lat, lon): x = lon, y = lat.
    let ab = (b.1 - a.1, b.0 - a.0);
    let ac = (c.1 - a.1, c.0 - a.0);
    let len = (ab.0 * ab.0 + ab.1 * ab.1).sqrt().max(f64::MIN_POSITIVE);
    let d = cross(ab, ac) / len;
    if d > TOUCH {
        1
    } else if d < -TOUCH {
        -1
    } else {
        0
    }
}

/// Whether segments a–b and c–d cross at one point inside both (not merely touching).
fn cross_properly(a: LatLon, b: LatLon, c: LatLon, d: LatLon) -> bool {
    let (s1, s2) = (side(a, b, c), side(a, b, d));
    let (s3, s4) = (side(c, d, a), side(c, d, b));
    s1 * s2 < 0 && s3 * s4 < 0
}

/// Whether `q` lies on the segment a–b (ends included).
fn on_segment(a: LatLon, b: LatLon, q: LatLon) -> bool {
    if side(a, b, q) != 0 {
        return false;
    }
    let ab = sub(b, a);
    let aq = sub(q, a);
    let t = ab.0 * aq.0 + ab.1 * aq.1;
    let l2 = ab.0 * ab.0 + ab.1 * ab.1;
    t >= -TOUCH && t <= l2 + TOUCH
}

/// The ring without a repeated closing point or consecutive duplicates.
fn clean(poly: &[LatLon]) -> Vec<LatLon> {
    let mut out: Vec<LatLon> = Vec::with_capacity(poly.len());
    for &p in poly {
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    while out.len() > 1 && out.first() == out.last() {
        out.pop();
    }
    out
}

fn edges(poly: &[LatLon]) -> impl Iterator<Item = (LatLon, LatLon)> + '_ {
    (0..poly.len()).map(move |i| (poly[i], poly[(i + 1) % poly.len()]))
}

/// Signed area in (lon, lat) as x, y: positive when the ring runs counter-clockwise.
fn signed_area(poly: &[LatLon]) -> f64 {
    let mut s = 0.0;
    for (a, b) in edges(poly) {
        s += a.1 * b.0 - b.1 * a.0;
    }
    s / 2.0
}

/// Points a hair inside and outside the middle of every piece of `poly`'s edges, the edges
/// cut where `other`'s corners touch them: `(inside, outside)` of `poly`.
fn probes(poly: &[LatLon], other: &[LatLon]) -> Vec<(LatLon, LatLon)> {
    let ccw = signed_area(poly) > 0.0;
    let mut out = Vec::new();
    for (a, b) in edges(poly) {
        let mut cuts: Vec<f64> = vec![0.0, 1.0];
        let ab = sub(b, a);
        let l2 = ab.0 * ab.0 + ab.1 * ab.1;
        if l2 <= 0.0 {
            continue;
        }
        for &q in other {
            if on_segment(a, b, q) {
                let aq = sub(q, a);
                cuts.push(((ab.0 * aq.0 + ab.1 * aq.1) / l2).clamp(0.0, 1.0));
            }
        }
        // Cuts closer than a tenth of a hair are one cut (corners that differ by rounding
        // only), so no piece is too short to hold a probe off the other polygon's border.
        let len = l2.sqrt();
        let close = HAIR / 10.0 / len;
        cuts.sort_by(f64::total_cmp);
        cuts.dedup_by(|x, y| (*x - *y).abs() < close);
        if cuts.last().is_some_and(|t| *t < 1.0) {
            // The end got merged into a cut just before it: end the last piece at the end.
            if let Some(t) = cuts.last_mut() {
                *t = 1.0;
            }
        }
        // The left of a→b (x = lon, y = lat) is inside a counter-clockwise ring.
        let left = (ab.1 / len, -ab.0 / len); // (dlat, dlon) of the left normal
        let (inward, outward) = if ccw {
            (left, (-left.0, -left.1))
        } else {
            ((-left.0, -left.1), left)
        };
        for w in cuts.windows(2) {
            let t = (w[0] + w[1]) / 2.0;
            let m = (a.0 + ab.0 * t, a.1 + ab.1 * t);
            out.push((
                (m.0 + inward.0 * HAIR, m.1 + inward.1 * HAIR),
                (m.0 + outward.0 * HAIR, m.1 + outward.1 * HAIR),
            ));
        }
    }
    out
}

/// Whether two polygons' edges cross each other properly anywhere.
fn any_crossing(a: &[LatLon], b: &[LatLon]) -> bool {
    edges(a).any(|(p, q)| edges(b).any(|(r, s)| cross_properly(p, q, r, s)))
}

/// Whether the inside of two simple polygons overlaps. Sharing a border or a corner is not
/// overlapping; one inside the other is.
pub fn overlaps(a: &[LatLon], b: &[LatLon]) -> bool {
    let (a, b) = (clean(a), clean(b));
    if a.len() < 3 || b.len() < 3 {
        return false;
    }
    if any_crossing(&a, &b) {
        return true;
    }
    probes(&a, &b)
        .iter()
        .any(|(inside, _)| contains(&b, *inside))
        || probes(&b, &a)
            .iter()
            .any(|(inside, _)| contains(&a, *inside))
}

/// Whether the simple polygon `inner` lies inside `outer` (borders may be shared).
pub fn within(inner: &[LatLon], outer: &[LatLon]) -> bool {
    let (inner, outer) = (clean(inner), clean(outer));
    if inner.len() < 3 || outer.len() < 3 {
        return false;
    }
    if any_crossing(&inner, &outer) {
        return false;
    }
    probes(&inner, &outer)
        .iter()
        .all(|(inside, _)| contains(&outer, *inside))
        && !probes(&outer, &inner)
            .iter()
            .any(|(_, outside)| contains(&inner, *outside))
}

/// Whether a ring is a simple polygon: at least three corners, some area, and no edge crossing
/// or touching another one except its neighbours at their shared corner.
pub fn is_simple(poly: &[LatLon]) -> bool {
    let p = clean(poly);
    let n = p.len();
    if n < 3 || signed_area(&p).abs() < 1e-14 {
        return false;
    }
    for i in 0..n {
        let (a, b) = (p[i], p[(i + 1) % n]);
        for j in i + 1..n {
            let (c, d) = (p[j], p[(j + 1) % n]);
            let adjacent = j == i + 1 || (i == 0 && j == n - 1);
            if adjacent {
                // Neighbours share one corner; they must not fold back onto each other.
                let (shared, other_a, other_c) = if j == i + 1 { (b, a, d) } else { (a, b, c) };
                if on_segment(other_a, shared, other_c) || on_segment(shared, other_c, other_a) {
                    return false;
                }
                continue;
            }
            if cross_properly(a, b, c, d)
                || on_segment(a, b, c)
                || on_segment(a, b, d)
                || on_segment(c, d, a)
                || on_segment(c, d, b)
            {
                return false;
            }
        }
    }
    true
}

/// A circle of `radius_m` metres around `centre` as a polygon of `sides` corners on it.
pub fn circle(centre: LatLon, radius_m: f64, sides: usize) -> Vec<LatLon> {
    let dlat = radius_m / 111_000.0;
    let dlon = radius_m / (111_000.0 * centre.0.to_radians().cos().max(0.01));
    (0..sides)
        .map(|i| {
            let t = std::f64::consts::TAU * i as f64 / sides as f64;
            (centre.0 + dlat * t.sin(), centre.1 + dlon * t.cos())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: [LatLon; 4] = [(30.0, 114.0), (30.0, 114.1), (30.1, 114.1), (30.1, 114.0)];

    #[test]
    fn inside_and_outside_a_square_and_a_concave_shape() {
        assert!(contains(&SQUARE, (30.05, 114.05)));
        assert!(!contains(&SQUARE, (30.15, 114.05)));
        assert!(!contains(&SQUARE, (30.05, 113.99)));
        // An L shape: the notch is outside.
        let l = [
            (0.0, 0.0),
            (0.0, 2.0),
            (1.0, 2.0),
            (1.0, 1.0),
            (2.0, 1.0),
            (2.0, 0.0),
        ];
        assert!(contains(&l, (0.5, 1.5)));
        assert!(contains(&l, (1.5, 0.5)));
        assert!(!contains(&l, (1.5, 1.5)));
        assert!(!contains(&l[..2], (0.0, 1.0)), "two points are no area");
    }

    fn square(lat: f64, lon: f64, size: f64) -> Vec<LatLon> {
        vec![
            (lat, lon),
            (lat, lon + size),
            (lat + size, lon + size),
            (lat + size, lon),
        ]
    }

    #[test]
    fn neighbours_may_share_a_border_but_not_overlap() {
        let a = square(30.0, 114.0, 0.01);
        // Side by side, sharing the whole edge, part of it, or one corner: no overlap.
        assert!(!overlaps(&a, &square(30.0, 114.01, 0.01)));
        assert!(!overlaps(&a, &square(30.005, 114.01, 0.01)));
        assert!(!overlaps(&a, &square(30.01, 114.01, 0.01)));
        assert!(!overlaps(&a, &square(30.5, 114.5, 0.01)));
        // Crossing, inside, identical, the same area drawn the other way round, a half of it:
        // overlap.
        assert!(overlaps(&a, &square(30.005, 114.005, 0.01)));
        assert!(overlaps(&a, &square(30.002, 114.002, 0.002)));
        assert!(overlaps(&square(30.002, 114.002, 0.002), &a));
        assert!(overlaps(&a, &a));
        let reversed: Vec<LatLon> = a.iter().rev().copied().collect();
        assert!(overlaps(&a, &reversed));
        let left_half = vec![
            (30.0, 114.0),
            (30.0, 114.005),
            (30.01, 114.005),
            (30.01, 114.0),
        ];
        assert!(overlaps(&a, &left_half));
        // A concave neighbour wrapped around a corner without touching inside.
        let l = vec![
            (30.0, 114.01),
            (30.0, 114.02),
            (30.02, 114.02),
            (30.02, 114.0),
            (30.01, 114.0),
            (30.01, 114.01),
        ];
        assert!(!overlaps(&a, &l));
        assert!(!overlaps(&square(30.005, 114.005, 0.002), &l));
        assert!(overlaps(&square(30.012, 114.012, 0.002), &l));
    }

    #[test]
    fn children_lie_inside_their_parent() {
        let parent = square(30.0, 114.0, 0.01);
        assert!(within(&square(30.002, 114.002, 0.002), &parent));
        assert!(within(&parent, &parent), "the same area");
        assert!(
            within(&square(30.0, 114.0, 0.005), &parent),
            "sharing two edges"
        );
        assert!(
            !within(&square(30.008, 114.008, 0.005), &parent),
            "poking out"
        );
        assert!(!within(&square(30.5, 114.5, 0.001), &parent), "elsewhere");
        assert!(!within(&square(29.99, 113.99, 0.03), &parent), "around it");
        // A notch: inside an L shape's bounding box but partly in the notch.
        let l = vec![
            (30.0, 114.0),
            (30.0, 114.02),
            (30.01, 114.02),
            (30.01, 114.01),
            (30.02, 114.01),
            (30.02, 114.0),
        ];
        assert!(within(&square(30.002, 114.002, 0.005), &l));
        assert!(!within(&square(30.008, 114.008, 0.005), &l));
        assert!(within(&circle((30.005, 114.005), 200.0, 32), &parent));
        assert!(!within(&circle((30.005, 114.005), 2_000.0, 32), &parent));
    }

    #[test]
    fn only_simple_rings_are_areas() {
        assert!(is_simple(&square(30.0, 114.0, 0.01)));
        assert!(is_simple(&circle((30.0, 114.0), 500.0, 64)));
        let bow_tie = vec![
            (30.0, 114.0),
            (30.01, 114.01),
            (30.0, 114.01),
            (30.01, 114.0),
        ];
        assert!(!is_simple(&bow_tie));
        let flat = vec![(30.0, 114.0), (30.0, 114.01), (30.0, 114.02)];
        assert!(!is_simple(&flat));
        let closed = {
            let mut s = square(30.0, 114.0, 0.01);
            s.push(s[0]);
            s
        };
        assert!(is_simple(&closed), "a repeated closing point is fine");
    }

    proptest::proptest! {
        /// Rectangles on a 1/1000-degree grid (so borders coincide often): the answers match
        /// the rectangles' own arithmetic, whichever way round each is drawn.
        #[test]
        fn fuzz_rectangles_overlap_and_nest_as_their_arithmetic_says(
            a in (0i32..20, 0i32..20, 1i32..10, 1i32..10),
            b in (0i32..20, 0i32..20, 1i32..10, 1i32..10),
            flip_a: bool,
            flip_b: bool,
        ) {
            let rect = |(y, x, h, w): (i32, i32, i32, i32), flip: bool| {
                let (y0, x0) = (30.0 + f64::from(y) / 1000.0, 114.0 + f64::from(x) / 1000.0);
                let (y1, x1) = (y0 + f64::from(h) / 1000.0, x0 + f64::from(w) / 1000.0);
                let mut r = vec![(y0, x0), (y0, x1), (y1, x1), (y1, x0)];
                if flip {
                    r.reverse();
                }
                r
            };
            let (ra, rb) = (rect(a, flip_a), rect(b, flip_b));
            let lo = |v: i32, len: i32| (v, v + len);
            let ((ay0, ay1), (ax0, ax1)) = (lo(a.0, a.2), lo(a.1, a.3));
            let ((by0, by1), (bx0, bx1)) = (lo(b.0, b.2), lo(b.1, b.3));
            let overlap = ay0.max(by0) < ay1.min(by1) && ax0.max(bx0) < ax1.min(bx1);
            let a_in_b = by0 <= ay0 && ay1 <= by1 && bx0 <= ax0 && ax1 <= bx1;
            proptest::prop_assert_eq!(overlaps(&ra, &rb), overlap);
            proptest::prop_assert_eq!(overlaps(&rb, &ra), overlap);
            proptest::prop_assert_eq!(within(&ra, &rb), a_in_b);
        }
    }

    #[test]
    fn distances_and_areas() {
        // One thousandth of a degree of latitude is about 111 m.
        let d = distance_m((30.0, 114.0), (30.001, 114.0));
        assert!((d - 111.2).abs() < 1.0, "{d}");
        assert!((area(&SQUARE) - 0.01).abs() < 1e-9);
        assert!(valid((30.0, 114.0)));
        assert!(!valid((91.0, 0.0)));
        assert!(!valid((f64::NAN, 0.0)));
    }
}
