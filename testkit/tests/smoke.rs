use testkit::sim::{Sim, rand_cmd};

#[test]
fn smoke() {
    let mut s = Sim::new(3, 1);
    let l = s.check_one_leader();
    println!("leader {l} at {} ms rpcs {}", s.now, s.rpcs);
    for _ in 0..5 {
        let c = rand_cmd(&mut s);
        let i = s.one(c, 3, false);
        println!("index {i} at {}", s.now);
    }
}
