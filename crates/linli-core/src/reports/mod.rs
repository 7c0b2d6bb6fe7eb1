//! Reports (报事 / 报修 / 投诉 / 接诉即办): the pure rules. The engine that stores reports,
//! routes them and enforces deadlines builds on these (issue #4, in progress).

pub mod calendar;
pub mod repairs;
pub mod state;
