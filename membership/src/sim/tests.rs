use super::*;

#[test]
fn smoke_100() {
    let cfg = Config::new(100, 1);
    let r = run(&cfg);
    eprintln!("{r:?}");
}
