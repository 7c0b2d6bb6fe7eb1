//! The fast read path (`Db::fetch_all_fast`): the same SQL and the same results on SQLite
//! (native connections) and PostgreSQL (sqlx), including what a write just committed.

use linli_store::db::{Backend, Sql, Val};
use linli_store::db_fast::FastVal;

use crate::common::TestApp;

#[tokio::test]
async fn same_sql_same_rows_on_both_backends() {
    let app = TestApp::empty().await;
    let db = &app.store.db;
    assert_eq!(db.has_native_readers(), db.backend == Backend::Sqlite);
    sqlx::query("CREATE TABLE fast_probe (id TEXT PRIMARY KEY, n BIGINT, note TEXT)")
        .execute(&db.write)
        .await
        .unwrap();
    // Committed through the write pool, read at once through the fast path.
    for (id, n, note) in [
        ("a", Some(1i64), None),
        ("b", Some(2), Some("x")),
        ("c", None, Some("y")),
    ] {
        let mut q = Sql::new("INSERT INTO fast_probe (id, n, note) VALUES (");
        q.bind(id)
            .push(", ")
            .bind(n)
            .push(", ")
            .bind(note.map(str::to_string))
            .push(")");
        q.query().execute(&db.write).await.unwrap();
        let seen = db
            .fetch_optional_fast(&Sql::new("SELECT id FROM fast_probe WHERE id = $1").arg(id))
            .await
            .unwrap();
        assert_eq!(
            seen.map(|r| r.str("id")).as_deref(),
            Some(id),
            "read after commit"
        );
    }

    // Placeholders out of order and repeated: bound by number, not by position.
    let q = Sql::new("SELECT id FROM fast_probe WHERE n = $2 OR (id = $1 AND id = $1) ORDER BY id")
        .arg("c")
        .arg(1i64);
    let ids: Vec<String> = db
        .fetch_all_fast(&q)
        .await
        .unwrap()
        .iter()
        .map(|r| r.str("id"))
        .collect();
    assert_eq!(ids, ["a", "c"]);

    // Types and NULLs, aliases, aggregates.
    let q = Sql::new(
        "SELECT id, n, note, n * 2 AS twice, COALESCE(note, $1) AS shown FROM fast_probe ORDER BY id",
    )
    .arg("-");
    let rows = db.fetch_all_fast(&q).await.unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].columns(), ["id", "n", "note", "twice", "shown"]);
    assert_eq!(rows[0].opt_i64("n"), Some(1));
    assert_eq!(rows[0].i64("twice"), 2);
    assert_eq!(rows[0].opt_str("note"), None);
    assert_eq!(rows[0].str("shown"), "-");
    assert_eq!(rows[1].opt_str_ref("note"), Some("x"));
    assert_eq!(rows[2].get("n"), &FastVal::Null);
    assert_eq!(rows[2].opt_i64("n"), None);
    let count = db
        .fetch_one_fast(&Sql::new("SELECT COUNT(*) AS n FROM fast_probe WHERE n >= $1").arg(1i64))
        .await
        .unwrap();
    assert_eq!(count.i64("n"), 2);

    // The same statement again with other values (the prepared-statement cache rebinds).
    for (id, want) in [("a", Some(1)), ("b", Some(2)), ("zz", None)] {
        let q = Sql::new("SELECT n FROM fast_probe WHERE id = $1").arg(id);
        let got = db
            .fetch_optional_fast(&q)
            .await
            .unwrap()
            .map(|r| r.i64("n"));
        assert_eq!(got, want, "{id}");
    }
    // NULL parameters match nothing with `=`.
    let q = Sql::new("SELECT id FROM fast_probe WHERE note = $1").arg(Val::NullText);
    assert!(db.fetch_all_fast(&q).await.unwrap().is_empty());

    // A bad statement is an internal error (logged), not a panic, and the path keeps working.
    let bad = db
        .fetch_all_fast(&Sql::new("SELECT nope FROM fast_probe"))
        .await;
    assert_eq!(bad.unwrap_err().code, "internal");
    assert!(
        db.fetch_one_fast(&Sql::new("SELECT 1 AS one"))
            .await
            .unwrap()
            .flag("one")
    );
    // Native readers are read-only.
    if db.has_native_readers() {
        let w = db.fetch_all_fast(&Sql::new("DELETE FROM fast_probe")).await;
        assert!(w.is_err());
        assert_eq!(
            db.fetch_one_fast(&Sql::new("SELECT COUNT(*) AS n FROM fast_probe"))
                .await
                .unwrap()
                .i64("n"),
            3
        );
    }
    app.close().await;
}

/// Totals of full first pages (counted separately, without `persons` when no person filter is
/// given) equal the number of rows a large page returns, for every kind of filter.
#[tokio::test]
async fn search_totals_match_the_rows() {
    use linli_core::auth::{Action, Grant};
    use linli_store::registry::persons::PersonQuery;
    let app = TestApp::demo().await;
    let store = &app.store;
    let read = Grant::system(Action::PersonRead);
    let building = store
        .places(&Grant::system(Action::PlaceRead), None, Some("building"))
        .await
        .unwrap()
        .remove(0);
    let all_in_building = store
        .search_persons(
            &read,
            None,
            &PersonQuery {
                place_id: Some(building.id.clone()),
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let surname: String = all_in_building.items[0].name.chars().take(1).collect();
    let queries = [
        PersonQuery {
            place_id: Some(building.id.clone()),
            ..Default::default()
        },
        PersonQuery {
            label: Some("elderly_alone".into()),
            ..Default::default()
        },
        PersonQuery {
            label: Some("elderly_alone".into()),
            place_id: Some(building.id.clone()),
            ..Default::default()
        },
        PersonQuery {
            name: Some(surname.clone()),
            place_id: Some(building.id.clone()),
            ..Default::default()
        },
        PersonQuery {
            name: Some(surname),
            label: Some("elderly_alone".into()),
            ..Default::default()
        },
    ];
    for q in queries {
        let big = store
            .search_persons(
                &read,
                None,
                &PersonQuery {
                    limit: Some(500),
                    ..q.clone()
                },
            )
            .await
            .unwrap();
        assert!(big.items.len() < 500, "{q:?}");
        let small = store
            .search_persons(
                &read,
                None,
                &PersonQuery {
                    limit: Some(1),
                    ..q.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(small.total, big.items.len() as i64, "{q:?}");
        assert_eq!(small.items.len(), big.items.len().min(1), "{q:?}");
        // A later page counts too.
        let later = store
            .search_persons(
                &read,
                None,
                &PersonQuery {
                    limit: Some(1),
                    offset: Some(1),
                    ..q.clone()
                },
            )
            .await
            .unwrap();
        assert_eq!(later.total, big.items.len() as i64, "{q:?}");
    }
    assert!(all_in_building.total > 1);

    // A building is searched the narrow way (keys sorted in memory), its community the general
    // way (ORDER BY in SQL): the building's people come in the same order in both, and pages of
    // the narrow way join up to the whole list.
    let community = store
        .place(
            &Grant::system(Action::PlaceRead),
            &building.parent_id.clone().unwrap(),
        )
        .await
        .unwrap();
    let community_id = if community.kind == "community" {
        community.id
    } else {
        community.parent_id.unwrap()
    };
    let whole = store
        .search_persons(
            &read,
            None,
            &PersonQuery {
                place_id: Some(community_id),
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ids = |items: &[linli_store::registry::persons::PersonSummary]| -> Vec<String> {
        items.iter().map(|p| p.id.clone()).collect()
    };
    let in_building = ids(&all_in_building.items);
    let from_community: Vec<String> = ids(&whole.items)
        .into_iter()
        .filter(|id| in_building.contains(id))
        .collect();
    assert_eq!(from_community, in_building);
    let mut paged = Vec::new();
    for offset in (0..in_building.len()).step_by(7) {
        let page = store
            .search_persons(
                &read,
                None,
                &PersonQuery {
                    place_id: Some(building.id.clone()),
                    limit: Some(7),
                    offset: Some(offset as i64),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        paged.extend(ids(&page.items));
    }
    assert_eq!(paged, in_building);
    app.close().await;
}

/// PostgreSQL plans the hot person searches from statistics, which bulk writes (the demo, an
/// import) bring up to date at once: an exact-ID search then goes through the blind-index
/// unique index instead of walking a whole community's residences (15 ms → 0.1 ms). The query
/// is the one `search_persons` sends for an ID (same shape, same conditions).
#[tokio::test]
async fn after_bulk_seeding_postgres_plans_the_id_search_through_its_index() {
    let app = TestApp::demo().await;
    if !app.is_postgres() {
        app.close().await;
        return;
    }
    let db = &app.store.db;
    let community: String =
        sqlx::query("SELECT path FROM places WHERE kind = 'community' ORDER BY path LIMIT 1")
            .fetch_one(&db.read)
            .await
            .map(|r| sqlx::Row::get(&r, "path"))
            .unwrap();
    let upper = linli_store::db::prefix_upper_bound(&community);
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN SELECT p.id, p.name, h.path AS hpath FROM persons p \
         JOIN residences r ON r.person_id = p.id AND r.end_date IS NULL \
         JOIN households h ON h.id = r.household_id \
         WHERE ((h.path >= '{community}' AND h.path < '{upper}')) \
         AND (p.id_bidx = 'no-such-index-value' OR p.id_key = 'no-such-index-value') \
         ORDER BY h.path, p.id LIMIT 50"
    )))
    .fetch_all(&db.read)
    .await
    .unwrap()
    .iter()
    .map(|r| sqlx::Row::get::<String, _>(r, 0))
    .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("persons_id_bidx_key"), "{plan}");
    app.close().await;
}

/// A label's holders over a whole city's scope (an administrator): PostgreSQL probes each
/// holder's residence through its index (a LATERAL subquery) instead of hashing every
/// residence of the area (3.3 ms → 1.2 ms at demo size, and it does not grow with the area).
/// The query is the one `search_persons` sends for a label.
#[tokio::test]
async fn postgres_finds_a_labels_holders_without_reading_the_whole_area() {
    let app = TestApp::demo().await;
    if !app.is_postgres() {
        app.close().await;
        return;
    }
    let db = &app.store.db;
    let label: String = sqlx::query("SELECT id FROM labels WHERE code = 'elderly_alone'")
        .fetch_one(&db.read)
        .await
        .map(|r| sqlx::Row::get(&r, "id"))
        .unwrap();
    let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN SELECT r.hpath AS kpath, pl.person_id AS kid FROM person_labels pl \
         CROSS JOIN LATERAL (SELECT r.hpath FROM residences r WHERE r.person_id = pl.person_id \
         AND r.end_date IS NULL AND ((r.hpath >= '/' AND r.hpath < '0')) LIMIT 1) r \
         WHERE pl.label_id = '{label}' LIMIT 501"
    )))
    .fetch_all(&db.read)
    .await
    .unwrap()
    .iter()
    .map(|r| sqlx::Row::get::<String, _>(r, 0))
    .collect();
    let plan = plan.join("\n");
    assert!(
        !plan.contains("Seq Scan on residences") && !plan.contains("Hash Join"),
        "{plan}"
    );
    // And the search answers the same as on SQLite: every holder in scope, once.
    let admin = app.login("admin").await;
    let page = app
        .get(&admin, "/api/v1/persons?label=elderly_alone&limit=500")
        .await
        .ok();
    let holders: i64 = sqlx::query(
        "SELECT COUNT(*) FROM person_labels pl JOIN residences r ON r.person_id = pl.person_id AND r.end_date IS NULL WHERE pl.label_id = $1",
    )
    .bind(label)
    .fetch_one(&db.read)
    .await
    .map(|r| sqlx::Row::get(&r, 0))
    .unwrap();
    assert_eq!(page["total"].as_i64().unwrap(), holders);
    app.close().await;
}
