//! STUB (replaced by the tree branch).
use crate::jute::{request::SetWatches, ErrorCode, Id, OpResult, Request, Response, Stat, WatcherEvent, OpCode};
use bytes::Bytes;
pub struct TreeOptions { pub extended_types_enabled: bool }
pub struct Database;
pub struct RequestContext<'a> { pub session_id: i64, pub ids: &'a [Id], pub is_super: bool }
pub struct Txn { pub session_id: i64, pub cxid: i32, pub zxid: i64, pub time_ms: i64, pub body: TxnBody }
pub enum TxnBody { CreateSession { timeout_ms: i32 }, CloseSession, Error(ErrorCode), Other }
pub struct ApplyOutcome { pub result: TxnResult, pub events: Vec<WatchFired> }
pub enum TxnResult { Created { path: String, stat: Stat, op: OpCode }, Deleted, SetData { stat: Stat }, SetAcl{stat: Stat}, Checked, Multi(Vec<OpResult>), Error(ErrorCode), SessionCreated, SessionClosed, Data(Option<Bytes>) }
pub struct WatchFired { pub session_id: i64, pub event: WatcherEvent }
impl Database {
    pub fn new(_o: TreeOptions) -> Self { Database }
    pub fn prep(&self, _c: &RequestContext, _r: &Request) -> Result<TxnBody, ErrorCode> { Err(ErrorCode::Unimplemented) }
    pub fn apply(&mut self, _t: &Txn) -> ApplyOutcome { ApplyOutcome { result: TxnResult::Error(ErrorCode::Unimplemented), events: vec![] } }
    pub fn read(&mut self, _c: &RequestContext, _r: &Request) -> Result<Response, ErrorCode> { Err(ErrorCode::Unimplemented) }
    pub fn set_watches(&mut self, _s: i64, _sw: &SetWatches) -> Vec<WatchFired> { vec![] }
    pub fn remove_session_watches(&mut self, _s: i64) {}
    pub fn expired_nodes(&self, _now: i64) -> Vec<String> { vec![] }
    pub fn node_count(&self) -> usize { 0 }
    pub fn approximate_data_size(&self) -> u64 { 0 }
    pub fn watch_count(&self) -> usize { 0 }
    pub fn watched_path_count(&self) -> usize { 0 }
    pub fn watches_by_session(&self) -> Vec<(i64, Vec<String>)> { vec![] }
    pub fn watches_by_path(&self) -> Vec<(String, Vec<i64>)> { vec![] }
    pub fn ephemerals_by_session(&self) -> Vec<(i64, Vec<String>)> { vec![] }
    pub fn ephemeral_count(&self) -> usize { 0 }
}
pub mod acl {
    use crate::jute::{ErrorCode, Id};
    pub fn digest(_u: &str) -> String { String::new() }
    pub fn authenticate(_s: &str, _a: &[u8]) -> Result<Id, ErrorCode> { Err(ErrorCode::AuthFailed) }
}
