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
