//! `Pool::next` in process: IDs per second on one counter, on one thread and on every
//! core, against the limit (one atomic add per ID). The upstream is the counter API's
//! own code (`counter_function::api::handle`) over HTTP on loopback with the counter in
//! memory, so block fetches cost what a fast upstream costs and the figure is the
//! pool's.
//!
//! Usage: `cargo bench -p counterctl-client --bench pool [-- SECONDS]` (default 3 s per
//! measurement).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use counter_function::api::{self, ApiRequest};
use counter_function::store::{CounterStore, Increment, StoreError};
use counterctl_client::{Auth, Client, Endpoint, MAX_COUNT, Pool, PoolOptions};

/// One counter in memory, as the API's store.
#[derive(Default)]
struct Memory(AtomicI64);

impl CounterStore for Memory {
    async fn increment(&self, request: &Increment<'_>) -> Result<i64, StoreError> {
        Ok(self.0.fetch_add(i64::from(request.count), Ordering::SeqCst) + i64::from(request.count))
    }

    async fn value(&self, _counter: &str) -> Result<Option<i64>, StoreError> {
        Ok(Some(self.0.load(Ordering::SeqCst)))
    }
}

async fn upstream() -> String {
    let store = Arc::new(Memory::default());
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let store = Arc::clone(&store);
        async move {
            let (parts, _) = request.into_parts();
            let request = ApiRequest {
                request_id: "bench",
                method: &parts.method,
                path: parts.uri.path(),
                query: parts.uri.query(),
                headers: &parts.headers,
            };
            api::handle(store.as_ref(), &request).await.map(axum::body::Body::from)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// IDs per second and the pool's misses (calls that found it dry) over `seconds`.
fn run(pool: &Pool, seconds: Duration) -> (f64, u64, i64) {
    let started = Instant::now();
    let (mut handed, mut misses, mut last) = (0u64, 0u64, 0i64);
    while started.elapsed() < seconds {
        for _ in 0..4096 {
            match pool.try_next() {
                Some(value) => {
                    assert!(value > last, "values increase on one thread");
                    last = value;
                    handed += 1;
                }
                None => misses += 1,
            }
        }
    }
    (handed as f64 / started.elapsed().as_secs_f64(), misses, last)
}

fn main() {
    let seconds = Duration::from_secs_f64(std::env::args().skip(1).find_map(|arg| arg.parse().ok()).unwrap_or(3.0));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let url = runtime.block_on(upstream());
    let client = Client::new(Endpoint::new(&url, Auth::None).unwrap());
    // Blocks of the largest size from the start: the figure is the steady state.
    let options = PoolOptions::default().min_block(MAX_COUNT).max_block(MAX_COUNT);
    let pool = runtime.block_on(async { Pool::new(client.clone(), "bench", options) });
    runtime.block_on(pool.next()).unwrap();

    let limit = {
        let counter = AtomicI64::new(0);
        let started = Instant::now();
        while started.elapsed() < seconds {
            for _ in 0..4096 {
                std::hint::black_box(counter.fetch_add(1, Ordering::Relaxed));
            }
        }
        counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    };
    let (one_thread, misses, _) = run(&pool, seconds);
    let async_rate = runtime.block_on(async {
        let started = Instant::now();
        let mut handed = 0u64;
        while started.elapsed() < seconds {
            for _ in 0..4096 {
                if pool.next().await.is_ok() {
                    handed += 1;
                }
            }
        }
        handed as f64 / started.elapsed().as_secs_f64()
    });
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let all_cores: f64 = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..threads).map(|_| scope.spawn(|| run(&pool, seconds).0)).collect();
        runs.into_iter().map(|run| run.join().unwrap()).sum()
    });
    let blocks = pool.buffered();
    println!("one atomic add (the limit), 1 thread: {:>6.1} M/s ({:.2} ns each)", limit / 1e6, 1e9 / limit);
    println!(
        "Pool::try_next, 1 thread:             {:>6.1} M/s ({:.2} ns each, {misses} dry)",
        one_thread / 1e6,
        1e9 / one_thread
    );
    println!("Pool::next().await, 1 task:           {:>6.1} M/s ({:.2} ns each)", async_rate / 1e6, 1e9 / async_rate);
    println!("Pool::try_next, {threads} threads:             {:>6.1} M/s in all", all_cores / 1e6);
    println!("(IDs held at the end: {blocks})");
}
