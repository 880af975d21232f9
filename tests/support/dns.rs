//! A fake DNS name server on loopback for SRV discovery tests, as the unit
//! tests of `src/dcs/etcd_srv.rs` make theirs: it answers every SRV
//! question for a name it holds records for, NXDOMAIN for any other, over
//! UDP. Its records can be changed while it runs (a record moved to
//! another member).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::UdpSocket;

/// `name -> [(port, target)]`.
type Records = Arc<Mutex<HashMap<String, Vec<(u16, String)>>>>;

pub struct FakeNameServer {
    pub addr: SocketAddr,
    records: Records,
    task: tokio::task::JoinHandle<()>,
}

impl FakeNameServer {
    /// Listening on 127.0.0.1, with no records.
    pub async fn start() -> FakeNameServer {
        let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = sock.local_addr().expect("addr");
        let records: Records = Arc::default();
        let held = records.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 512];
            loop {
                let Ok((len, from)) = sock.recv_from(&mut buf).await else {
                    return;
                };
                let q = &buf[..len];
                let Some(name) = question_name(q) else {
                    continue;
                };
                let recs = held
                    .lock()
                    .expect("records")
                    .get(&name)
                    .cloned()
                    .unwrap_or_default();
                let _ = sock.send_to(&answer(q, &recs), from).await;
            }
        });
        FakeNameServer {
            addr,
            records,
            task,
        }
    }

    /// `name` (`_etcd-client._tcp.example.test`) answers `(port, target)`
    /// records from now on; an empty list is NXDOMAIN.
    pub fn set(&self, name: &str, records: &[(u16, &str)]) {
        let recs = records.iter().map(|(p, t)| (*p, (*t).to_owned())).collect();
        self.records
            .lock()
            .expect("records")
            .insert(name.to_owned(), recs);
    }
}

impl Drop for FakeNameServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The name a query asks for, dotted, without the final dot.
fn question_name(q: &[u8]) -> Option<String> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        if len == 0 {
            return Some(labels.join("."));
        }
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).into_owned());
        i += 1 + len;
    }
}

/// The answer to `q` with SRV records `(port, target)` (priority and weight
/// 0), NXDOMAIN when there are none.
fn answer(q: &[u8], records: &[(u16, String)]) -> Vec<u8> {
    let mut a = q.to_vec();
    a[2] = 0x81;
    a[3] = if records.is_empty() { 0x83 } else { 0x80 };
    a[6..8].copy_from_slice(&(records.len() as u16).to_be_bytes());
    for (port, target) in records {
        a.extend_from_slice(&[0xc0, 12]); // the question's name
        a.extend_from_slice(&[0, 33, 0, 1, 0, 0, 0, 60]); // SRV, IN, TTL 60
        let mut rdata = vec![0, 0, 0, 0];
        rdata.extend_from_slice(&port.to_be_bytes());
        for l in target.split('.') {
            rdata.push(l.len() as u8);
            rdata.extend_from_slice(l.as_bytes());
        }
        rdata.push(0);
        a.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        a.extend_from_slice(&rdata);
    }
    a
}
