//! A deterministic demo district: places (city → … → room), organizations and resident
//! households with valid, unique ID and mobile numbers. Pure: the same seed always gives
//! the same data, so demos, screenshots and tests are reproducible.

use std::collections::HashSet;

use chrono::{Datelike, Days, NaiveDate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::idcard;

/// Everything the demo generator produces.
#[derive(Debug, Clone)]
pub struct DemoData {
    /// Parents always come before their children.
    pub places: Vec<DemoPlace>,
    pub orgs: Vec<DemoOrg>,
    pub households: Vec<DemoHousehold>,
}

#[derive(Debug, Clone)]
pub struct DemoPlace {
    pub key: String,
    pub parent_key: Option<String>,
    /// "city", "district", "street", "community", "grid", "building", "unit" or "room".
    pub kind: &'static str,
    pub name: String,
    /// 12-digit statistical division code (city … community only).
    pub code: Option<String>,
    /// Floor area in hundredths of m² (rooms only).
    pub area_x100: Option<i64>,
    /// "residential", "shop" or "public" (rooms only).
    pub room_use: Option<&'static str>,
    /// `[x, y, w, h]` footprint on the community's 1000×700 site plan (buildings only).
    pub plan: Option<[i32; 4]>,
}

#[derive(Debug, Clone)]
pub struct DemoOrg {
    pub key: String,
    /// "committee", "property_company", "department", "social_org", "merchant", "enterprise".
    pub kind: &'static str,
    pub name: String,
    pub node_key: String,
    /// Community keys a property company serves (empty for other kinds).
    pub serves: Vec<String>,
    /// Issue categories a department handles (empty for other kinds).
    pub categories: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DemoHousehold {
    pub room_key: String,
    /// "owner", "tenant" or "other".
    pub tenure: &'static str,
    pub moved_in: NaiveDate,
    /// The head comes first.
    pub persons: Vec<DemoPerson>,
}

#[derive(Debug, Clone)]
pub struct DemoPerson {
    pub name: String,
    pub id_number: String,
    pub phone: Option<String>,
    /// "head", "spouse", "child", "parent", "grandchild", "sibling" or "other".
    pub relation: &'static str,
    /// Label codes: "elderly_alone", "disabled", "party_member", "veteran", "low_income".
    pub labels: Vec<&'static str>,
}

/// Region code (江岸区) used in every generated ID number.
pub const REGION: &str = "420102";
/// Ages are computed relative to this date; no birth or move-in date lies after it.
const REFERENCE: (i32, u32, u32) = (2026, 6, 30);
const SITE_W: i32 = 1000;
const SITE_H: i32 = 700;
/// Rooms in the whole district (residential + shops + public), spread over the buildings.
const TARGET_ROOMS: usize = 3100;

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "林", "高", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "蒋", "蔡", "余", "杜", "叶", "程", "魏", "苏",
];
/// The most common surnames are listed twice, so they come up more often.
const COMMON_SURNAMES: usize = 10;

const MALE_CHARS: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "斌", "超", "明", "刚", "平", "辉", "鹏", "华", "飞",
    "鑫", "波", "宇", "浩", "凯", "健", "俊", "帆", "帅", "旭", "宁", "龙", "林", "阳", "建", "国",
    "志", "海", "峰", "文", "博", "晨", "子", "轩", "浩", "然", "德", "兵", "亮",
];
const FEMALE_CHARS: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "霞", "秀", "英", "玲", "桂", "兰", "萍", "红", "燕",
    "婷", "雪", "琳", "晶", "慧", "颖", "倩", "洁", "梅", "琴", "云", "莉", "欣", "怡", "佳", "悦",
    "涵", "诗", "雨", "萱", "思", "梦", "月", "春", "玉", "凤", "珍", "文", "子",
];

const MOBILE_PREFIXES: &[&str] = &[
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153",
    "155", "156", "158", "159", "166", "173", "177", "180", "185", "186", "187", "188", "189",
    "191", "199",
];

struct CommunitySpec {
    street: usize,
    name: &'static str,
    code: &'static str,
    grids: usize,
    buildings: usize,
    /// Old estates have low walk-up buildings, newer ones towers.
    max_floors: u32,
}

const STREETS: [(&str, &str); 2] = [("大智街道", "420102003000"), ("一元街道", "420102004000")];

const COMMUNITIES: [CommunitySpec; 3] = [
    CommunitySpec {
        street: 0,
        name: "幸福里社区",
        code: "420102003001",
        grids: 3,
        buildings: 10,
        max_floors: 33,
    },
    CommunitySpec {
        street: 0,
        name: "江滩社区",
        code: "420102003002",
        grids: 4,
        buildings: 9,
        max_floors: 33,
    },
    CommunitySpec {
        street: 1,
        name: "新村社区",
        code: "420102004001",
        grids: 2,
        buildings: 11,
        max_floors: 18,
    },
];

/// The map area of a demo community: centre, radius and boundary polygon (WGS-84), plausible
/// places in Wuhan's 江岸区 near the Hankou riverside (made up for the demo, not surveyed).
pub struct CommunityArea {
    /// The community's division code (as in [`COMMUNITIES`]).
    pub code: &'static str,
    pub centre: (f64, f64),
    pub radius_m: i64,
    pub boundary: &'static [(f64, f64)],
}

pub const COMMUNITY_AREAS: [CommunityArea; 3] = [
    CommunityArea {
        code: "420102003001", // 幸福里社区
        centre: (30.5800, 114.2730),
        radius_m: 600,
        boundary: &[
            (30.5760, 114.2680),
            (30.5760, 114.2780),
            (30.5840, 114.2780),
            (30.5840, 114.2680),
        ],
    },
    CommunityArea {
        code: "420102003002", // 江滩社区
        centre: (30.5900, 114.2950),
        radius_m: 600,
        boundary: &[
            (30.5860, 114.2900),
            (30.5860, 114.3000),
            (30.5940, 114.3000),
            (30.5940, 114.2900),
        ],
    },
    CommunityArea {
        code: "420102004001", // 新村社区
        centre: (30.6020, 114.3100),
        radius_m: 600,
        boundary: &[
            (30.5980, 114.3050),
            (30.5980, 114.3150),
            (30.6060, 114.3150),
            (30.6060, 114.3050),
        ],
    },
];

const GRID_NAMES: [&str; 4] = ["第一网格", "第二网格", "第三网格", "第四网格"];

fn reference() -> NaiveDate {
    NaiveDate::from_ymd_opt(REFERENCE.0, REFERENCE.1, REFERENCE.2).expect("valid date")
}

/// Generate the demo district for `seed`.
pub fn generate(seed: u64) -> DemoData {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut places = Vec::new();
    let mut residential_rooms: Vec<String> = Vec::new();

    places.push(area("city", None, "city", "武汉市", "420100000000"));
    places.push(area(
        "district",
        Some("city"),
        "district",
        "江岸区",
        "420102000000",
    ));
    let street_keys: Vec<String> = (1..=STREETS.len()).map(|i| format!("s{i}")).collect();
    for (key, (name, code)) in street_keys.iter().zip(STREETS) {
        places.push(area(key, Some("district"), "street", name, code));
    }

    let total_buildings: usize = COMMUNITIES.iter().map(|c| c.buildings).sum();
    let mut rooms_left = TARGET_ROOMS;
    let mut buildings_left = total_buildings;
    let mut community_keys = Vec::new();
    for (ci, spec) in COMMUNITIES.iter().enumerate() {
        let ckey = format!("c{}", ci + 1);
        places.push(area(
            &ckey,
            Some(&street_keys[spec.street]),
            "community",
            spec.name,
            spec.code,
        ));
        community_keys.push(ckey.clone());
        let grid_keys: Vec<String> = (1..=spec.grids).map(|g| format!("{ckey}/g{g}")).collect();
        for (key, name) in grid_keys.iter().zip(GRID_NAMES) {
            places.push(place(key, &ckey, "grid", name));
        }
        // Site plan: buildings in a simple grid of cells, one building per cell.
        let cols = 4;
        let rows = spec.buildings.div_ceil(cols) as i32;
        let cell_w = SITE_W / cols as i32;
        let cell_h = SITE_H / rows;
        let mut public_done = false;
        for b in 0..spec.buildings {
            let grid = b * spec.grids / spec.buildings;
            let bkey = format!("{}/b{}", grid_keys[grid], b + 1);
            // Spread the remaining room budget over the remaining buildings.
            let target = rooms_left as f64 / buildings_left as f64 * rng.random_range(0.7..1.3);
            // Pick a shape whose floor count for the target is plausible for this estate.
            let mut shape = (3, 4);
            for _ in 0..20 {
                let (u, r): (u32, u32) = (rng.random_range(1..=3), rng.random_range(2..=4));
                let floors = target / f64::from(u * r);
                if (5.0..=f64::from(spec.max_floors)).contains(&floors) {
                    shape = (u, r);
                    break;
                }
            }
            let (units, per_floor) = shape;
            let floors =
                ((target / f64::from(units * per_floor)).round() as u32).clamp(5, spec.max_floors);
            rooms_left = rooms_left.saturating_sub((units * per_floor * floors) as usize);
            buildings_left -= 1;

            let (cx, cy) = ((b % cols) as i32 * cell_w, (b / cols) as i32 * cell_h);
            let w = (cell_w - 40).min(70 + 35 * units as i32);
            let h = (cell_h - 40).min(60 + 3 * floors as i32);
            let mut bplace = place(&bkey, &grid_keys[grid], "building", &format!("{}栋", b + 1));
            bplace.plan = Some([cx + 20, cy + 20, w, h]);
            places.push(bplace);
            // Street-facing buildings (the first in each grid) have shops on the ground floor.
            let shops = b == 0 || grid != (b - 1) * spec.grids / spec.buildings;
            for u in 1..=units {
                let ukey = format!("{bkey}/u{u}");
                places.push(place(&ukey, &bkey, "unit", &format!("{u}单元")));
                // The same position on every floor has the same floor plan.
                let areas: Vec<i64> = (0..per_floor)
                    .map(|_| rng.random_range(45_00..=160_00) / 10 * 10)
                    .collect();
                for floor in 1..=floors {
                    for r in 1..=per_floor {
                        let name = format!("{floor}{r:02}");
                        let key = format!("{ukey}/{name}");
                        let room_use = if floor == 1 && !public_done {
                            public_done = true;
                            "public"
                        } else if floor == 1 && shops && rng.random_bool(0.6) {
                            "shop"
                        } else {
                            "residential"
                        };
                        if room_use == "residential" {
                            residential_rooms.push(key.clone());
                        }
                        let mut room = place(&key, &ukey, "room", &name);
                        room.area_x100 = Some(areas[(r - 1) as usize]);
                        room.room_use = Some(room_use);
                        places.push(room);
                    }
                }
            }
        }
    }

    let orgs = orgs(&street_keys, &community_keys);
    let households = households(&mut rng, &residential_rooms);
    DemoData {
        places,
        orgs,
        households,
    }
}

fn place(key: &str, parent: &str, kind: &'static str, name: &str) -> DemoPlace {
    DemoPlace {
        key: key.to_string(),
        parent_key: Some(parent.to_string()),
        kind,
        name: name.to_string(),
        code: None,
        area_x100: None,
        room_use: None,
        plan: None,
    }
}

fn area(key: &str, parent: Option<&str>, kind: &'static str, name: &str, code: &str) -> DemoPlace {
    DemoPlace {
        key: key.to_string(),
        parent_key: parent.map(str::to_string),
        kind,
        name: name.to_string(),
        code: Some(code.to_string()),
        area_x100: None,
        room_use: None,
        plan: None,
    }
}

fn orgs(street_keys: &[String], community_keys: &[String]) -> Vec<DemoOrg> {
    let org = |key: &str, kind: &'static str, name: &str, node: &str| DemoOrg {
        key: key.to_string(),
        kind,
        name: name.to_string(),
        node_key: node.to_string(),
        serves: Vec::new(),
        categories: Vec::new(),
    };
    let dept = |key: &str, name: &str, node: &str, categories: &[&str]| DemoOrg {
        categories: categories.iter().map(|c| c.to_string()).collect(),
        ..org(key, "department", name, node)
    };
    let mut out = Vec::new();
    for (i, (ckey, spec)) in community_keys.iter().zip(&COMMUNITIES).enumerate() {
        out.push(org(
            &format!("committee{}", i + 1),
            "committee",
            &format!("{}居民委员会", spec.name),
            ckey,
        ));
    }
    out.push(DemoOrg {
        serves: community_keys.to_vec(),
        ..org(
            "property1",
            "property_company",
            "江城物业服务有限公司",
            "district",
        )
    });
    for (i, (skey, (sname, _))) in street_keys.iter().zip(STREETS).enumerate() {
        out.push(dept(
            &format!("dept_cg{}", i + 1),
            &format!("{sname}城管科"),
            skey,
            &["environment", "city_appearance"],
        ));
        out.push(dept(
            &format!("dept_zz{}", i + 1),
            &format!("{sname}综治办"),
            skey,
            &["public_security", "dispute"],
        ));
    }
    out.push(dept(
        "dept_housing",
        "江岸区住房保障和房屋管理局",
        "district",
        &["housing", "property"],
    ));
    out.push(dept("dept_water", "江岸区水务局", "district", &["water"]));
    out.push(org(
        "social1",
        "social_org",
        "幸福里邻里互助志愿者协会",
        &community_keys[0],
    ));
    out.push(org(
        "merchant1",
        "merchant",
        "江滩便民生活超市",
        &community_keys[1],
    ));
    out.push(org(
        "enterprise1",
        "enterprise",
        "武汉新村数码科技有限公司",
        &community_keys[2],
    ));
    out
}

/// State shared while generating people: uniqueness of ID and mobile numbers.
struct People<'a> {
    rng: &'a mut StdRng,
    ids: HashSet<String>,
    phones: HashSet<String>,
    reference: NaiveDate,
}

impl People<'_> {
    fn surname(&mut self) -> &'static str {
        let i = self.rng.random_range(0..SURNAMES.len() + COMMON_SURNAMES);
        SURNAMES[if i >= SURNAMES.len() {
            i - SURNAMES.len()
        } else {
            i
        }]
    }

    fn name(&mut self, surname: &str, male: bool) -> String {
        let chars = if male { MALE_CHARS } else { FEMALE_CHARS };
        let mut name = surname.to_string();
        let len = if self.rng.random_bool(0.3) { 1 } else { 2 };
        for _ in 0..len {
            name.push_str(chars[self.rng.random_range(0..chars.len())]);
        }
        name
    }

    fn birth_date(&mut self, age: u32) -> NaiveDate {
        let back = u64::from(age) * 365 + u64::from(age / 4) + self.rng.random_range(0..365u64);
        self.reference - Days::new(back)
    }

    fn id_number(&mut self, birth: NaiveDate, male: bool) -> String {
        loop {
            // Odd sequence numbers are men, even ones women.
            let seq = self.rng.random_range(0..500u16) * 2 + u16::from(male);
            let id = idcard::compose(REGION, birth, seq);
            if self.ids.insert(id.clone()) {
                return id;
            }
        }
    }

    fn phone(&mut self) -> String {
        loop {
            let prefix = MOBILE_PREFIXES[self.rng.random_range(0..MOBILE_PREFIXES.len())];
            let phone = format!("{prefix}{:08}", self.rng.random_range(0..100_000_000u32));
            if self.phones.insert(phone.clone()) {
                return phone;
            }
        }
    }

    fn person(
        &mut self,
        relation: &'static str,
        surname: &str,
        male: bool,
        age: u32,
    ) -> DemoPerson {
        let birth = self.birth_date(age);
        let age = years_between(birth, self.reference);
        let adult = age >= 18;
        let has_phone = if adult {
            self.rng.random_bool(0.95)
        } else {
            age >= 12 && self.rng.random_bool(0.3)
        };
        let mut labels = Vec::new();
        if self.rng.random_bool(0.02) {
            labels.push("disabled");
        }
        if adult && self.rng.random_bool(0.06) {
            labels.push("party_member");
        }
        if adult && age >= 20 && self.rng.random_bool(if male { 0.035 } else { 0.004 }) {
            labels.push("veteran");
        }
        DemoPerson {
            name: self.name(surname, male),
            id_number: self.id_number(birth, male),
            phone: has_phone.then(|| self.phone()),
            relation,
            labels,
        }
    }
}

fn years_between(birth: NaiveDate, at: NaiveDate) -> u32 {
    let mut years = at.year() - birth.year();
    if (at.month(), at.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    years.max(0) as u32
}

/// Who lives together besides the head, by household size.
fn composition(rng: &mut StdRng, size: usize) -> &'static [&'static str] {
    let p: f64 = rng.random();
    match size {
        1 => &[],
        2 => match p {
            p if p < 0.60 => &["spouse"],
            p if p < 0.80 => &["child"],
            p if p < 0.90 => &["parent"],
            p if p < 0.95 => &["sibling"],
            _ => &["other"],
        },
        3 => match p {
            p if p < 0.75 => &["spouse", "child"],
            p if p < 0.85 => &["spouse", "parent"],
            p if p < 0.90 => &["child", "child"],
            _ => &["spouse", "grandchild"],
        },
        4 => match p {
            p if p < 0.50 => &["spouse", "child", "child"],
            p if p < 0.85 => &["spouse", "child", "parent"],
            _ => &["spouse", "child", "grandchild"],
        },
        _ => match p {
            p if p < 0.40 => &["spouse", "child", "child", "parent"],
            p if p < 0.80 => &["spouse", "child", "parent", "parent"],
            _ => &["spouse", "child", "other", "grandchild"],
        },
    }
}

fn household(
    people: &mut People<'_>,
    room_key: &str,
    tenure: &'static str,
    size: usize,
) -> DemoHousehold {
    let rng = &mut *people.rng;
    let members = composition(rng, size);
    let has = |r: &str| members.contains(&r);
    // The head's age must leave room for the generations around them.
    let head_age: u32 = if has("grandchild") {
        rng.random_range(56..=82)
    } else if has("parent") {
        rng.random_range(30..=56)
    } else if has("child") {
        rng.random_range(28..=68)
    } else if size == 1 && tenure != "tenant" && rng.random_bool(0.3) {
        rng.random_range(70..=93)
    } else if tenure == "tenant" {
        rng.random_range(20..=50)
    } else {
        rng.random_range(22..=80)
    };
    let head_male = rng.random_bool(0.6);
    let head_surname = people.surname();
    let head = people.person("head", head_surname, head_male, head_age);

    let mut spouse_surname = head_surname;
    let mut persons = vec![head];
    let mut parents = 0;
    // The oldest child's age, for a grandchild's or a child-in-law's age.
    let mut child_age: Option<u32> = None;
    for &relation in members {
        let rng = &mut *people.rng;
        let (surname, male, age) = match relation {
            "spouse" => {
                let age = head_age
                    .saturating_add_signed(rng.random_range(-6..=6))
                    .max(20);
                spouse_surname = if rng.random_bool(0.97) {
                    people.surname()
                } else {
                    head_surname
                };
                (spouse_surname, !head_male, age)
            }
            "child" => {
                let max_gap = head_age.saturating_sub(20).clamp(20, 40);
                let gap = rng.random_range(20..=max_gap);
                let age = head_age.saturating_sub(gap);
                child_age = Some(child_age.map_or(age, |a| a.max(age)));
                let father = if head_male {
                    head_surname
                } else {
                    spouse_surname
                };
                (father, rng.random_bool(0.5), age)
            }
            "parent" => {
                parents += 1;
                let age = (head_age + rng.random_range(22..=34)).min(98);
                let male = if parents == 1 {
                    rng.random_bool(0.5)
                } else {
                    !persons.last().map_or(false, |p| is_male(&p.id_number))
                };
                let surname = if male { head_surname } else { people.surname() };
                (surname, male, age)
            }
            "grandchild" => {
                let base = child_age.unwrap_or(head_age.saturating_sub(28));
                let age = base
                    .saturating_sub(rng.random_range(22..=32))
                    .min(head_age.saturating_sub(42));
                (head_surname, rng.random_bool(0.5), age)
            }
            "sibling" => {
                let age = head_age
                    .saturating_add_signed(rng.random_range(-8..=8))
                    .max(18);
                (head_surname, rng.random_bool(0.5), age)
            }
            _ => {
                // A lodger, or a child's spouse next to a grandchild.
                let age = child_age.map_or_else(|| rng.random_range(20..=60), |a| a.max(22));
                let male = rng.random_bool(0.5);
                (people.surname(), male, age)
            }
        };
        persons.push(people.person(relation, surname, male, age));
    }

    let rng = &mut *people.rng;
    if size == 1 && head_age >= 70 {
        persons[0].labels.push("elderly_alone");
    }
    if rng.random_bool(0.02) {
        persons[0].labels.push("low_income");
    }
    // Tenants moved in recently; owners any time since 1995, but not before the head
    // came of age.
    let earliest = if tenure == "tenant" { 2016 } else { 1995 };
    let head_birth = idcard::parse(&persons[0].id_number).map(|id| id.birth_date);
    // 18 years and a few days (leap days and 29 February births included).
    let adult_from = head_birth.map_or(NaiveDate::MIN, |b| b + Days::new(18 * 365 + 6));
    let start = NaiveDate::from_ymd_opt(earliest, 1, 1)
        .expect("valid date")
        .max(adult_from);
    let span = (people.reference - start).num_days() as u64;
    let moved_in = start + Days::new(rng.random_range(0..=span));
    DemoHousehold {
        room_key: room_key.to_string(),
        tenure,
        moved_in,
        persons,
    }
}

fn is_male(id_number: &str) -> bool {
    id_number
        .as_bytes()
        .get(16)
        .is_some_and(|d| (d - b'0') % 2 == 1)
}

fn households(rng: &mut StdRng, rooms: &[String]) -> Vec<DemoHousehold> {
    let mut people = People {
        rng,
        ids: HashSet::new(),
        phones: HashSet::new(),
        reference: reference(),
    };
    let mut out = Vec::with_capacity(rooms.len());
    for room in rooms {
        let rng = &mut *people.rng;
        if rng.random_bool(0.05) {
            continue; // vacant
        }
        let p: f64 = rng.random();
        let tenure = if p < 0.80 {
            "owner"
        } else if p < 0.97 {
            "tenant"
        } else {
            "other"
        };
        let p: f64 = rng.random();
        let size = match p {
            p if p < 0.18 => 1,
            p if p < 0.48 => 2,
            p if p < 0.76 => 3,
            p if p < 0.91 => 4,
            _ => 5,
        };
        let second = rng.random_bool(0.03);
        let first = household(&mut people, room, tenure, size);
        let lives_alone = first.persons.len() == 1;
        out.push(first);
        // A few flats are shared with a second, renting household.
        if second && !lives_alone {
            let size = people.rng.random_range(1..=2);
            out.push(household(&mut people, room, "tenant", size));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{division, phone};
    use std::collections::HashMap;

    fn persons(d: &DemoData) -> impl Iterator<Item = &DemoPerson> {
        d.households.iter().flat_map(|h| &h.persons)
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a = generate(7);
        let b = generate(7);
        assert_eq!(a.places.len(), b.places.len());
        assert_eq!(a.households.len(), b.households.len());
        assert_eq!(persons(&a).count(), persons(&b).count());
        let first = |d: &DemoData| d.households[0].persons[0].id_number.clone();
        let last = |d: &DemoData| {
            d.households
                .last()
                .unwrap()
                .persons
                .last()
                .unwrap()
                .id_number
                .clone()
        };
        assert_eq!(first(&a), first(&b));
        assert_eq!(last(&a), last(&b));
        let c = generate(8);
        assert_ne!(first(&a), first(&c));
    }

    #[test]
    fn counts_are_in_range() {
        for seed in [0, 1, 42, 2026] {
            let d = generate(seed);
            let count = |kind: &str| d.places.iter().filter(|p| p.kind == kind).count();
            assert_eq!(count("city"), 1);
            assert_eq!(count("district"), 1);
            assert_eq!(count("street"), 2);
            assert_eq!(count("community"), 3);
            assert!((6..=12).contains(&count("grid")));
            assert!(
                (25..=35).contains(&count("building")),
                "buildings {}",
                count("building")
            );
            assert!(count("unit") >= count("building"));
            let households = d.households.len();
            eprintln!(
                "seed {seed}: {households} households, {} persons, {} rooms",
                persons(&d).count(),
                count("room")
            );
            assert!(
                (2700..=3300).contains(&households),
                "seed {seed}: {households} households"
            );
            let n = persons(&d).count();
            assert!((7000..=9000).contains(&n), "seed {seed}: {n} persons");
            let kinds: HashSet<&str> = d.orgs.iter().map(|o| o.kind).collect();
            for kind in [
                "committee",
                "property_company",
                "department",
                "social_org",
                "merchant",
                "enterprise",
            ] {
                assert!(kinds.contains(kind), "{kind}");
            }
            assert!(d.orgs.iter().filter(|o| o.kind == "department").count() >= 4);
            assert_eq!(d.orgs.iter().filter(|o| o.kind == "committee").count(), 3);
        }
    }

    #[test]
    fn tree_is_consistent() {
        let d = generate(3);
        let by_key: HashMap<&str, &DemoPlace> =
            d.places.iter().map(|p| (p.key.as_str(), p)).collect();
        assert_eq!(by_key.len(), d.places.len(), "keys are unique");
        let parent_kind = |kind: &str| match kind {
            "district" => "city",
            "street" => "district",
            "community" => "street",
            "grid" => "community",
            "building" => "grid",
            "unit" => "building",
            _ => "unit",
        };
        for p in &d.places {
            match &p.parent_key {
                None => assert_eq!(p.kind, "city"),
                Some(parent) => {
                    let parent = by_key.get(parent.as_str()).expect("parent exists");
                    assert_eq!(parent.kind, parent_kind(p.kind), "{}", p.key);
                    if let (Some(pc), Some(c)) = (&parent.code, &p.code) {
                        assert!(division::code_within(pc, c), "{c} within {pc}");
                    }
                }
            }
            assert_eq!(
                p.code.is_some(),
                matches!(p.kind, "city" | "district" | "street" | "community")
            );
            assert_eq!(p.area_x100.is_some(), p.kind == "room");
            assert_eq!(p.room_use.is_some(), p.kind == "room");
            assert_eq!(p.plan.is_some(), p.kind == "building");
            if let Some(a) = p.area_x100 {
                assert!((45_00..=160_00).contains(&a));
            }
        }
        // Building footprints stay on the site and never overlap within a community.
        let community_of = |key: &str| key.split('/').next().unwrap().to_string();
        let buildings: Vec<&DemoPlace> = d.places.iter().filter(|p| p.kind == "building").collect();
        for (i, a) in buildings.iter().enumerate() {
            let [x, y, w, h] = a.plan.unwrap();
            assert!(x >= 0 && y >= 0 && w > 0 && h > 0 && x + w <= SITE_W && y + h <= SITE_H);
            for b in &buildings[i + 1..] {
                if community_of(&a.key) != community_of(&b.key) {
                    continue;
                }
                let [bx, by, bw, bh] = b.plan.unwrap();
                let apart = x + w <= bx || bx + bw <= x || y + h <= by || by + bh <= y;
                assert!(apart, "{} overlaps {}", a.key, b.key);
            }
        }
        for h in &d.households {
            let room = by_key.get(h.room_key.as_str()).expect("room exists");
            assert_eq!(room.room_use, Some("residential"));
        }
        for o in &d.orgs {
            assert!(by_key.contains_key(o.node_key.as_str()), "{}", o.key);
            assert!(
                o.serves
                    .iter()
                    .all(|k| by_key[k.as_str()].kind == "community")
            );
            assert_eq!(o.serves.is_empty(), o.kind != "property_company");
            assert_eq!(o.categories.is_empty(), o.kind != "department");
        }
    }

    #[test]
    fn people_are_valid_and_unique() {
        let d = generate(11);
        let reference = reference();
        let mut ids = HashSet::new();
        let mut phones = HashSet::new();
        let mut tenures: HashMap<&str, usize> = HashMap::new();
        for h in &d.households {
            *tenures.entry(h.tenure).or_default() += 1;
            assert!(
                h.moved_in >= NaiveDate::from_ymd_opt(1995, 1, 1).unwrap()
                    && h.moved_in <= reference
            );
            assert_eq!(h.persons.iter().filter(|p| p.relation == "head").count(), 1);
            assert_eq!(h.persons[0].relation, "head");
            let head_birth = idcard::parse(&h.persons[0].id_number).unwrap().birth_date;
            assert!(years_between(head_birth, h.moved_in) >= 18, "{h:?}");
            for p in &h.persons {
                let id = idcard::parse(&p.id_number).expect("valid id");
                assert_eq!(id.number, p.id_number);
                assert!(
                    ids.insert(p.id_number.clone()),
                    "duplicate id {}",
                    p.id_number
                );
                if let Some(ph) = &p.phone {
                    assert_eq!(phone::parse_mobile(ph).as_deref(), Some(ph.as_str()));
                    assert!(phones.insert(ph.clone()), "duplicate phone {ph}");
                }
                let name_len = p.name.chars().count();
                assert!((2..=3).contains(&name_len), "{}", p.name);
                match p.relation {
                    "child" | "grandchild" => assert!(id.birth_date > head_birth),
                    "parent" => assert!(id.birth_date < head_birth),
                    _ => {}
                }
                if p.labels.contains(&"elderly_alone") {
                    assert_eq!(h.persons.len(), 1);
                    assert!(years_between(id.birth_date, reference) >= 70);
                }
            }
        }
        let n = ids.len() as f64;
        assert!(phones.len() as f64 / n > 0.6, "most people have a phone");
        let owners = tenures["owner"] as f64 / d.households.len() as f64;
        assert!((0.7..0.9).contains(&owners), "owners {owners}");
        let avg = n / d.households.len() as f64;
        assert!((2.4..3.0).contains(&avg), "average household {avg}");
        for label in [
            "elderly_alone",
            "disabled",
            "party_member",
            "veteran",
            "low_income",
        ] {
            assert!(persons(&d).any(|p| p.labels.contains(&label)), "{label}");
        }
    }

    #[test]
    fn fast_enough() {
        let start = std::time::Instant::now();
        generate(1);
        // Generous bound: the target is < 200 ms in debug builds, CI machines vary.
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
