//! The household import: a template with one row per person, and validation of the rows
//! of an uploaded table into households (pure; the store decides what to do with them).
//!
//! Rows sharing a 户号 form one household. Every problem is reported as a [`RowIssue`]
//! pointing at the row (and column) the user sees in Excel; valid households are returned
//! alongside the issues so the caller can import them or refuse the whole file.

use std::collections::{HashMap, HashSet};

use chrono::NaiveDate;

use crate::sheet::Table;
use crate::{idcard, phone};

/// The template's header row, in order.
pub const HOUSEHOLD_HEADERS: [&str; 12] = [
    "户号",
    "社区",
    "楼栋",
    "单元",
    "房号",
    "居住类型",
    "姓名",
    "与户主关系",
    "身份证号",
    "手机号",
    "标签",
    "入住日期",
];

/// Columns an uploaded file must have (the others are optional).
pub const REQUIRED_HEADERS: [&str; 8] = [
    "户号",
    "社区",
    "楼栋",
    "单元",
    "房号",
    "姓名",
    "与户主关系",
    "身份证号",
];

/// Longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 50;

const COL_KEY: usize = 0;
const COL_COMMUNITY: usize = 1;
const COL_BUILDING: usize = 2;
const COL_UNIT: usize = 3;
const COL_ROOM: usize = 4;
const COL_TENURE: usize = 5;
const COL_NAME: usize = 6;
const COL_RELATION: usize = 7;
const COL_ID: usize = 8;
const COL_PHONE: usize = 9;
const COL_LABELS: usize = 10;
const COL_MOVED_IN: usize = 11;

const TENURES: [(&str, &str); 3] = [("业主", "owner"), ("租户", "tenant"), ("其他", "other")];
const RELATIONS: [(&str, &str); 7] = [
    ("户主", "head"),
    ("配偶", "spouse"),
    ("子女", "child"),
    ("父母", "parent"),
    ("孙子女", "grandchild"),
    ("兄弟姐妹", "sibling"),
    ("其他", "other"),
];

/// One problem found in the upload. `row` is the spreadsheet row (the header is row 1 in
/// a file that starts at the top); `column` the header name, None for household-level issues.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RowIssue {
    pub row: usize,
    pub column: Option<String>,
    /// Localized message key, e.g. "import.required" or "validation.id_card.check_digit".
    pub code: &'static str,
    /// The offending cell value, when there is one.
    pub value: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportPerson {
    pub row: usize,
    pub name: String,
    /// Normalized (upper-case X).
    pub id_number: String,
    /// Normalized mobile number.
    pub phone: Option<String>,
    /// "head", "spouse", "child", "parent", "grandchild", "sibling" or "other".
    pub relation: &'static str,
    /// Label names as written, e.g. "独居老人".
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportHousehold {
    /// The 户号 that groups the rows (only meaningful within the file).
    pub key: String,
    pub community: String,
    pub building: String,
    pub unit: String,
    pub room: String,
    /// "owner", "tenant" or "other" (from the head's row).
    pub tenure: &'static str,
    /// From the head's row.
    pub moved_in: Option<NaiveDate>,
    /// The head first, then the other valid rows in file order.
    pub persons: Vec<ImportPerson>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedImport {
    /// Households whose head row is valid, with their valid rows only.
    pub households: Vec<ImportHousehold>,
    /// Every problem, ordered by row.
    pub issues: Vec<RowIssue>,
    /// Data rows in the table.
    pub total_rows: usize,
}

/// 居住类型 cell → tenure code ("" → "owner"); the English codes are accepted too.
pub fn tenure_code(cell: &str) -> Option<&'static str> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Some("owner");
    }
    lookup(&TENURES, cell)
}

/// 与户主关系 cell → relation code; the English codes are accepted too.
pub fn relation_code(cell: &str) -> Option<&'static str> {
    lookup(&RELATIONS, cell.trim())
}

/// The template's Chinese name of a tenure code (for exports).
pub fn tenure_name(code: &str) -> Option<&'static str> {
    TENURES.iter().find(|(_, c)| *c == code).map(|(n, _)| *n)
}

/// The template's Chinese name of a relation code (for exports).
pub fn relation_name(code: &str) -> Option<&'static str> {
    RELATIONS.iter().find(|(_, c)| *c == code).map(|(n, _)| *n)
}

fn lookup(table: &[(&'static str, &'static str)], cell: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(name, code)| *name == cell || code.eq_ignore_ascii_case(cell))
        .map(|(_, code)| *code)
}

/// 入住日期: `YYYY-MM-DD`, `YYYY/MM/DD` or `YYYY.MM.DD`.
pub fn parse_date(cell: &str) -> Option<NaiveDate> {
    let cell = cell.trim();
    ["%Y-%m-%d", "%Y/%m/%d", "%Y.%m.%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(cell, f).ok())
}

/// Label names in a 标签 cell, split on 、，,;；/ and whitespace.
pub fn split_labels(cell: &str) -> Vec<String> {
    cell.split(|c: char| matches!(c, '、' | '，' | ',' | ';' | '；' | '/') || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A row after cell-level validation.
struct Row {
    row: usize,
    key: String,
    place: [String; 4],
    tenure: &'static str,
    moved_in: Option<NaiveDate>,
    /// Relation as understood, even when other cells are bad (to find the head).
    relation: Option<&'static str>,
    person: Option<ImportPerson>,
}

/// Validate the rows of an uploaded table. `Err` only when required columns are missing
/// (one issue per missing header, on row 1); everything else is reported in the result.
pub fn parse_households(table: &Table) -> Result<ParsedImport, Vec<RowIssue>> {
    let columns: Vec<Option<usize>> = HOUSEHOLD_HEADERS
        .iter()
        .map(|h| table.headers.iter().position(|t| t.trim() == *h))
        .collect();
    let missing: Vec<RowIssue> = HOUSEHOLD_HEADERS
        .iter()
        .zip(&columns)
        .filter(|(h, c)| c.is_none() && REQUIRED_HEADERS.contains(h))
        .map(|(h, _)| RowIssue {
            row: 1,
            column: Some(h.to_string()),
            code: "import.missing_column",
            value: None,
        })
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }

    let mut issues = Vec::new();
    let mut seen_ids = HashSet::new();
    let rows: Vec<Row> = table
        .rows
        .iter()
        .map(|(row, cells)| {
            let cell = |col: usize| {
                columns[col]
                    .and_then(|i| cells.get(i))
                    .map_or("", |s| s.trim())
            };
            parse_row(*row, &cell, &mut seen_ids, &mut issues)
        })
        .collect();

    // Group by 户号 in order of first appearance; rows without one were already reported.
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<&Row>> = HashMap::new();
    for r in rows.iter().filter(|r| !r.key.is_empty()) {
        groups
            .entry(r.key.as_str())
            .or_insert_with(|| {
                order.push(r.key.as_str());
                Vec::new()
            })
            .push(r);
    }

    let mut households = Vec::new();
    for key in order {
        let group = &groups[key];
        let group_issue = |issues: &mut Vec<RowIssue>, row: usize, code: &'static str| {
            issues.push(RowIssue {
                row,
                column: None,
                code,
                value: None,
            })
        };
        let heads: Vec<&&Row> = group
            .iter()
            .filter(|r| r.relation == Some("head"))
            .collect();
        let head = match heads.as_slice() {
            [] => {
                for r in group {
                    group_issue(&mut issues, r.row, "import.household_no_head");
                }
                continue;
            }
            [head] => *head,
            _ => {
                for r in group {
                    group_issue(&mut issues, r.row, "import.household_many_heads");
                }
                continue;
            }
        };
        let Some(head_person) = &head.person else {
            for r in group.iter().filter(|r| r.row != head.row) {
                group_issue(&mut issues, r.row, "import.household_head_invalid");
            }
            continue;
        };
        let mut persons = vec![head_person.clone()];
        for r in group.iter().filter(|r| r.row != head.row) {
            if r.place != head.place {
                group_issue(&mut issues, r.row, "import.household_place_mismatch");
            } else if let Some(p) = &r.person {
                persons.push(p.clone());
            }
        }
        let [community, building, unit, room] = head.place.clone();
        households.push(ImportHousehold {
            key: key.to_string(),
            community,
            building,
            unit,
            room,
            tenure: head.tenure,
            moved_in: head.moved_in,
            persons,
        });
    }

    issues.sort_by_key(|i| i.row);
    Ok(ParsedImport {
        households,
        issues,
        total_rows: table.rows.len(),
    })
}

fn parse_row<'a>(
    row: usize,
    cell: &dyn Fn(usize) -> &'a str,
    seen_ids: &mut HashSet<String>,
    issues: &mut Vec<RowIssue>,
) -> Row {
    let before = issues.len();
    let mut issue = |col: usize, code: &'static str, value: &str| {
        issues.push(RowIssue {
            row,
            column: Some(HOUSEHOLD_HEADERS[col].to_string()),
            code,
            value: (!value.is_empty()).then(|| value.to_string()),
        });
    };
    for col in [
        COL_KEY,
        COL_COMMUNITY,
        COL_BUILDING,
        COL_UNIT,
        COL_ROOM,
        COL_NAME,
        COL_RELATION,
        COL_ID,
    ] {
        if cell(col).is_empty() {
            issue(col, "import.required", "");
        }
    }

    let name = cell(COL_NAME);
    if name.chars().count() > MAX_NAME_CHARS {
        issue(COL_NAME, "import.name_too_long", name);
    }
    let relation = match cell(COL_RELATION) {
        "" => None,
        s => {
            let code = relation_code(s);
            if code.is_none() {
                issue(COL_RELATION, "import.bad_relation", s);
            }
            code
        }
    };
    let tenure = tenure_code(cell(COL_TENURE)).unwrap_or_else(|| {
        issue(COL_TENURE, "import.bad_tenure", cell(COL_TENURE));
        "owner"
    });
    let id_number = match cell(COL_ID) {
        "" => None,
        s => match idcard::parse(s) {
            Ok(id) if !seen_ids.insert(id.number.clone()) => {
                issue(COL_ID, "import.duplicate_id_in_file", &id.number);
                None
            }
            Ok(id) => Some(id.number),
            Err(e) => {
                issue(COL_ID, e.code(), s);
                None
            }
        },
    };
    let phone = match cell(COL_PHONE) {
        "" => None,
        s => {
            let p = phone::parse_mobile(s);
            if p.is_none() {
                issue(COL_PHONE, "validation.phone.invalid", s);
            }
            p
        }
    };
    let moved_in = match cell(COL_MOVED_IN) {
        "" => None,
        s => {
            let d = parse_date(s);
            if d.is_none() {
                issue(COL_MOVED_IN, "import.bad_date", s);
            }
            d
        }
    };

    let valid = issues.len() == before;
    let person = match (valid, id_number, relation) {
        (true, Some(id_number), Some(relation)) => Some(ImportPerson {
            row,
            name: name.to_string(),
            id_number,
            phone,
            relation,
            labels: split_labels(cell(COL_LABELS)),
        }),
        _ => None,
    };
    Row {
        row,
        key: cell(COL_KEY).to_string(),
        place: [COL_COMMUNITY, COL_BUILDING, COL_UNIT, COL_ROOM].map(|c| cell(c).to_string()),
        tenure,
        moved_in,
        relation,
        person,
    }
}

/// Two example households for the downloadable template (valid, made-up ID numbers).
pub fn template_rows() -> Vec<Vec<String>> {
    let id = |y, m, d, seq| {
        idcard::compose(
            "420102",
            NaiveDate::from_ymd_opt(y, m, d).expect("valid date"),
            seq,
        )
    };
    [
        row12(
            [
                "H001",
                "幸福里社区",
                "1栋",
                "1单元",
                "502",
                "业主",
                "王建国",
                "户主",
            ],
            id(1978, 3, 12, 31),
            "13871234567",
            "党员",
            "2010-05-01",
        ),
        row12(
            [
                "H001",
                "幸福里社区",
                "1栋",
                "1单元",
                "502",
                "业主",
                "李秀英",
                "配偶",
            ],
            id(1980, 8, 21, 42),
            "13971234568",
            "",
            "",
        ),
        row12(
            [
                "H001",
                "幸福里社区",
                "1栋",
                "1单元",
                "502",
                "业主",
                "王子轩",
                "子女",
            ],
            id(2012, 11, 2, 17),
            "",
            "",
            "",
        ),
        row12(
            [
                "H002",
                "江滩社区",
                "3栋",
                "2单元",
                "1201",
                "租户",
                "张桂兰",
                "户主",
            ],
            id(1949, 6, 5, 28),
            "13507123456",
            "低保户",
            "2021-03-15",
        ),
        row12(
            [
                "H002",
                "江滩社区",
                "3栋",
                "2单元",
                "1201",
                "租户",
                "张志强",
                "子女",
            ],
            id(1975, 1, 30, 53),
            "15927123457",
            "退役军人、党员",
            "",
        ),
    ]
    .into_iter()
    .map(Vec::from)
    .collect()
}

fn row12(first: [&str; 8], id: String, phone: &str, labels: &str, moved_in: &str) -> [String; 12] {
    let [a, b, c, d, e, f, g, h] = first.map(String::from);
    [
        a,
        b,
        c,
        d,
        e,
        f,
        g,
        h,
        id,
        phone.into(),
        labels.into(),
        moved_in.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(headers: &[&str], rows: &[Vec<String>]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: rows
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, r)| (i + 2, r))
                .collect(),
        }
    }

    fn template() -> Table {
        table(&HOUSEHOLD_HEADERS, &template_rows())
    }

    fn codes(p: &ParsedImport) -> Vec<(usize, Option<&str>, &str)> {
        p.issues
            .iter()
            .map(|i| (i.row, i.column.as_deref(), i.code))
            .collect()
    }

    fn id(y: i32, seq: u16) -> String {
        idcard::compose("420102", NaiveDate::from_ymd_opt(y, 1, 1).unwrap(), seq)
    }

    /// A row of household `key` in room 101.
    fn person(key: &str, relation: &str, id_number: &str) -> Vec<String> {
        let mut r: Vec<String> = vec![String::new(); 12];
        r[COL_KEY] = key.into();
        r[COL_COMMUNITY] = "幸福里社区".into();
        r[COL_BUILDING] = "1栋".into();
        r[COL_UNIT] = "1单元".into();
        r[COL_ROOM] = "101".into();
        r[COL_NAME] = "测试".into();
        r[COL_RELATION] = relation.into();
        r[COL_ID] = id_number.into();
        r
    }

    fn parse(rows: &[Vec<String>]) -> ParsedImport {
        parse_households(&table(&HOUSEHOLD_HEADERS, rows)).unwrap()
    }

    #[test]
    fn clean_template_parses() {
        let p = parse_households(&template()).unwrap();
        assert_eq!(p.issues, vec![]);
        assert_eq!(p.total_rows, 5);
        assert_eq!(p.households.len(), 2);
        let h1 = &p.households[0];
        assert_eq!(h1.key, "H001");
        assert_eq!(
            (h1.community.as_str(), h1.room.as_str()),
            ("幸福里社区", "502")
        );
        assert_eq!(h1.tenure, "owner");
        assert_eq!(h1.moved_in, NaiveDate::from_ymd_opt(2010, 5, 1));
        let relations: Vec<&str> = h1.persons.iter().map(|p| p.relation).collect();
        assert_eq!(relations, ["head", "spouse", "child"]);
        assert_eq!(h1.persons[0].labels, ["党员"]);
        assert_eq!(h1.persons[2].phone, None);
        let h2 = &p.households[1];
        assert_eq!(h2.tenure, "tenant");
        assert_eq!(h2.persons[0].row, 5);
        assert_eq!(h2.persons[1].labels, ["退役军人", "党员"]);
    }

    #[test]
    fn template_round_trips_through_a_spreadsheet() {
        let bytes =
            crate::sheet::write_xlsx("住户导入", &HOUSEHOLD_HEADERS, &template_rows()).unwrap();
        let t = crate::sheet::read_table(&bytes, 100).unwrap();
        let p = parse_households(&t).unwrap();
        assert_eq!((p.households.len(), p.issues.len()), (2, 0));
    }

    #[test]
    fn header_order_does_not_matter() {
        let t = template();
        let order: Vec<usize> = (0..12).rev().collect();
        let headers: Vec<&str> = order.iter().map(|&i| HOUSEHOLD_HEADERS[i]).collect();
        let rows: Vec<Vec<String>> = t
            .rows
            .iter()
            .map(|(_, r)| order.iter().map(|&i| r[i].clone()).collect())
            .collect();
        let mut shuffled = table(&headers, &rows);
        shuffled.headers[0] = format!(" {} ", shuffled.headers[0]);
        let p = parse_households(&shuffled).unwrap();
        assert_eq!(p, parse_households(&t).unwrap());
    }

    #[test]
    fn optional_columns_may_be_absent() {
        let required: Vec<usize> = REQUIRED_HEADERS
            .iter()
            .map(|h| HOUSEHOLD_HEADERS.iter().position(|x| x == h).unwrap())
            .collect();
        let rows: Vec<Vec<String>> = template_rows()
            .into_iter()
            .map(|r| required.iter().map(|&i| r[i].clone()).collect())
            .collect();
        let p = parse_households(&table(&REQUIRED_HEADERS, &rows)).unwrap();
        assert_eq!((p.households.len(), p.issues.len()), (2, 0));
        assert_eq!(p.households[1].tenure, "owner");
        assert_eq!(p.households[1].moved_in, None);
    }

    #[test]
    fn missing_columns() {
        let headers: Vec<&str> = HOUSEHOLD_HEADERS
            .iter()
            .copied()
            .filter(|h| *h != "身份证号" && *h != "户号")
            .collect();
        let err = parse_households(&table(&headers, &[])).unwrap_err();
        assert_eq!(err.len(), 2);
        assert!(
            err.iter()
                .all(|i| i.row == 1 && i.code == "import.missing_column")
        );
        assert_eq!(err[0].column.as_deref(), Some("户号"));
        assert_eq!(err[1].column.as_deref(), Some("身份证号"));
    }

    #[test]
    fn cell_issues() {
        let mut rows = vec![person("A", "户主", &id(1970, 1))];
        let mut bad = |col: usize, value: &str| {
            let mut r = person("A", "配偶", &id(1971, rows.len() as u16 * 2 + 1));
            r[col] = value.into();
            rows.push(r);
        };
        bad(COL_NAME, "");
        bad(COL_ID, "42010219700101001");
        bad(COL_ID, "42010219700101001A");
        bad(COL_ID, "420102197002300011");
        let good = id(1972, 5);
        let wrong = if good.ends_with('1') { '2' } else { '1' };
        bad(COL_ID, &format!("{}{wrong}", &good[..17]));
        bad(COL_PHONE, "1234");
        bad(COL_RELATION, "朋友");
        bad(COL_TENURE, "借住");
        bad(COL_MOVED_IN, "2020年1月");
        bad(COL_NAME, &"长".repeat(51));
        let p = parse(&rows);
        assert_eq!(
            codes(&p),
            vec![
                (3, Some("姓名"), "import.required"),
                (4, Some("身份证号"), "validation.id_card.length"),
                (5, Some("身份证号"), "validation.id_card.characters"),
                (6, Some("身份证号"), "validation.id_card.birth_date"),
                (7, Some("身份证号"), "validation.id_card.check_digit"),
                (8, Some("手机号"), "validation.phone.invalid"),
                (9, Some("与户主关系"), "import.bad_relation"),
                (10, Some("居住类型"), "import.bad_tenure"),
                (11, Some("入住日期"), "import.bad_date"),
                (12, Some("姓名"), "import.name_too_long"),
            ]
        );
        assert_eq!(p.issues[5].value.as_deref(), Some("1234"));
        assert_eq!(p.issues[0].value, None);
        // The head is valid, so the household is kept with the head only.
        assert_eq!(p.households.len(), 1);
        assert_eq!(p.households[0].persons.len(), 1);
    }

    #[test]
    fn mappings_dates_and_labels() {
        let mut head = person("A", "head", &id(1960, 1).to_lowercase());
        head[COL_TENURE] = "tenant".into();
        head[COL_MOVED_IN] = "2019/8/1".into();
        head[COL_LABELS] = " 独居老人、低保户，党员,残疾人;退役军人；甲/乙 丙 ".into();
        head[COL_PHONE] = "138 7123 4567".into();
        let mut kid = person("A", "孙子女", &id(2015, 2));
        kid[COL_MOVED_IN] = "2019.08.01".into();
        let p = parse(&[head, kid]);
        assert_eq!(p.issues, vec![]);
        let h = &p.households[0];
        assert_eq!(h.tenure, "tenant");
        assert_eq!(h.moved_in, NaiveDate::from_ymd_opt(2019, 8, 1));
        assert_eq!(
            h.persons[0].labels,
            [
                "独居老人",
                "低保户",
                "党员",
                "残疾人",
                "退役军人",
                "甲",
                "乙",
                "丙"
            ]
        );
        assert_eq!(h.persons[0].phone.as_deref(), Some("13871234567"));
        assert_eq!(h.persons[0].id_number, id(1960, 1));
        assert_eq!(h.persons[1].relation, "grandchild");
        assert_eq!(
            parse_date("2019-08-01"),
            NaiveDate::from_ymd_opt(2019, 8, 1)
        );
        for (name, code) in RELATIONS {
            assert_eq!(relation_code(name), Some(code));
            assert_eq!(relation_name(code), Some(name));
        }
        assert_eq!(tenure_code(""), Some("owner"));
        assert_eq!(tenure_code("其他"), Some("other"));
        assert_eq!(tenure_name("tenant"), Some("租户"));
    }

    #[test]
    fn duplicate_ids_in_file() {
        let same = id(1980, 3);
        let p = parse(&[
            person("A", "户主", &same),
            person("B", "户主", &same.to_lowercase()),
            person("C", "户主", &id(1981, 3)),
            person("C", "子女", &same),
        ]);
        assert_eq!(
            codes(&p),
            vec![
                (3, Some("身份证号"), "import.duplicate_id_in_file"),
                (5, Some("身份证号"), "import.duplicate_id_in_file"),
            ]
        );
        let keys: Vec<&str> = p.households.iter().map(|h| h.key.as_str()).collect();
        assert_eq!(keys, ["A", "C"]);
        assert_eq!(p.households[1].persons.len(), 1);
    }

    #[test]
    fn household_rules() {
        let mut moved = person("D", "子女", &id(2001, 9));
        moved[COL_ROOM] = "102".into();
        let p = parse(&[
            // No head.
            person("A", "配偶", &id(1970, 1)),
            person("A", "子女", &id(1995, 1)),
            // Two heads.
            person("B", "户主", &id(1971, 1)),
            person("B", "户主", &id(1972, 1)),
            // Invalid head: the others are reported and the household is dropped.
            person("C", "户主", "123"),
            person("C", "配偶", &id(1973, 1)),
            // A member in another room.
            person("D", "户主", &id(1974, 1)),
            moved,
            // Missing 户号: reported, not grouped.
            person("", "户主", &id(1975, 1)),
        ]);
        assert_eq!(
            codes(&p),
            vec![
                (2, None, "import.household_no_head"),
                (3, None, "import.household_no_head"),
                (4, None, "import.household_many_heads"),
                (5, None, "import.household_many_heads"),
                (6, Some("身份证号"), "validation.id_card.length"),
                (7, None, "import.household_head_invalid"),
                (9, None, "import.household_place_mismatch"),
                (10, Some("户号"), "import.required"),
            ]
        );
        assert_eq!(p.households.len(), 1);
        assert_eq!(p.households[0].key, "D");
        assert_eq!(p.households[0].persons.len(), 1);
        assert_eq!(p.total_rows, 9);
    }
}
