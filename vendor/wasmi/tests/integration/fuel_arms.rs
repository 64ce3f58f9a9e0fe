//! meshnode patch: an `if`'s arms are charged in advance by the enclosing block.
//!
//! Upstream Wasmi starts each arm with an `Op::ConsumeFuel` of its own. The patch
//! (`AdvanceArm` in `src/engine/translator/func/mod.rs`) charges the dearer arm with the
//! block around the `if`, so both paths through an `if` cost the same, and loops still
//! run out of fuel because their headers still charge.

use wasmi::{Config, Engine, Error, Linker, Module, Store, TrapCode};

/// Instantiates `wat` with fuel metering on and returns the store and its `"test"` export.
fn setup(wat: &str) -> (Store<()>, wasmi::TypedFunc<i32, i32>) {
    let mut config = Config::default();
    config.consume_fuel(true);
    let engine = Engine::new(&config);
    let mut store = Store::new(&engine, ());
    let module = Module::new(&engine, wat.as_bytes()).unwrap();
    let instance = Linker::new(&engine)
        .instantiate_and_start(&mut store, &module)
        .unwrap();
    let func = instance.get_typed_func::<i32, i32>(&store, "test").unwrap();
    (store, func)
}

/// Fuel consumed by one call of `"test"` with `arg`.
fn fuel_of_call(wat: &str, arg: i32) -> u64 {
    let (mut store, func) = setup(wat);
    let given = 1_000_000;
    store.set_fuel(given).unwrap();
    func.call(&mut store, arg).unwrap();
    given - store.get_fuel().unwrap()
}

/// A cheap `then` arm (one operator) and a dear `else` arm (ten).
const IF_ELSE: &str = r#"
    (module
        (func (export "test") (param $x i32) (result i32)
            (if (result i32) (local.get $x)
                (then (i32.const 7))
                (else
                    (i32.add (i32.add (i32.add (i32.add (i32.add
                        (local.get $x) (i32.const 1)) (i32.const 2)) (i32.const 3))
                        (i32.const 4)) (i32.const 5)))
            )
        )
    )
"#;

/// The same function with the dear arm only, unconditionally.
const DEAR_ARM_ONLY: &str = r#"
    (module
        (func (export "test") (param $x i32) (result i32)
            (i32.add (i32.add (i32.add (i32.add (i32.add
                (local.get $x) (i32.const 1)) (i32.const 2)) (i32.const 3))
                (i32.const 4)) (i32.const 5))
        )
    )
"#;

#[test]
#[cfg_attr(not(feature = "wat"), ignore)]
fn both_arms_of_an_if_cost_the_dearer_arm() {
    let cheap = fuel_of_call(IF_ELSE, 1);
    let dear = fuel_of_call(IF_ELSE, 0);
    assert_eq!(cheap, dear, "both paths are charged the dearer arm, in advance");
    // At least the dear arm's operators are charged, so the charge is not too low.
    assert!(dear >= fuel_of_call(DEAR_ARM_ONLY, 0), "{dear}");
}

#[test]
#[cfg_attr(not(feature = "wat"), ignore)]
fn an_if_without_else_charges_its_then_arm() {
    let wat = r#"
        (module
            (func (export "test") (param $x i32) (result i32)
                (if (local.get $x)
                    (then
                        (local.set $x (i32.add (i32.add (i32.add
                            (local.get $x) (i32.const 1)) (i32.const 2)) (i32.const 3)))))
                (local.get $x)
            )
        )
    "#;
    assert_eq!(fuel_of_call(wat, 1), fuel_of_call(wat, 0));
}

#[test]
#[cfg_attr(not(feature = "wat"), ignore)]
fn nested_ifs_charge_the_dearest_path() {
    // Paths: x=0 -> else (2 adds); x=1 -> then, inner else (1 add); x=2 -> then,
    // inner then (4 adds). All three cost the same: the dearest path.
    let wat = r#"
        (module
            (func (export "test") (param $x i32) (result i32)
                (if (result i32) (local.get $x)
                    (then
                        (if (result i32) (i32.eq (local.get $x) (i32.const 2))
                            (then (i32.add (i32.add (i32.add (i32.add
                                (local.get $x) (i32.const 1)) (i32.const 2)) (i32.const 3))
                                (i32.const 4)))
                            (else (i32.add (local.get $x) (i32.const 1)))))
                    (else (i32.add (i32.add (local.get $x) (i32.const 1)) (i32.const 2))))
            )
        )
    "#;
    let fuel: Vec<u64> = (0..3).map(|x| fuel_of_call(wat, x)).collect();
    assert_eq!(fuel[0], fuel[1], "{fuel:?}");
    assert_eq!(fuel[1], fuel[2], "{fuel:?}");
}

#[test]
#[cfg_attr(not(feature = "wat"), ignore)]
fn a_loop_of_ifs_still_runs_out_of_fuel() {
    // An endless loop whose body is an `if`/`else`: its header still charges.
    let wat = r#"
        (module
            (func (export "test") (param $x i32) (result i32)
                (loop $l
                    (if (i32.and (local.get $x) (i32.const 1))
                        (then (local.set $x (i32.add (local.get $x) (i32.const 3))))
                        (else (local.set $x (i32.add (local.get $x) (i32.const 1)))))
                    (br $l))
                (local.get $x)
            )
        )
    "#;
    let (mut store, func) = setup(wat);
    store.set_fuel(100_000).unwrap();
    let error: Error = func.call(&mut store, 0).unwrap_err();
    assert_eq!(error.as_trap_code(), Some(TrapCode::OutOfFuel));
}
