"""Helper functions every compiled policy module carries (WebAssembly text).

Pointers and lengths come from the host encoder (abi.py); ids in sets are ascending.
"""

HELPERS = r"""
  (func $mem_eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (if (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b)))
          (then (return (i32.const 0))))
        (local.set $a (i32.add (local.get $a) (i32.const 1)))
        (local.set $b (i32.add (local.get $b) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (i32.const 1))
  (func $starts_with (param $ap i32) (param $al i32) (param $bp i32) (param $bl i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $bl) (local.get $al))
      (then (i32.const 0))
      (else (call $mem_eq (local.get $ap) (local.get $bp) (local.get $bl)))))
  (func $ends_with (param $ap i32) (param $al i32) (param $bp i32) (param $bl i32) (result i32)
    (if (result i32) (i32.gt_u (local.get $bl) (local.get $al))
      (then (i32.const 0))
      (else (call $mem_eq (i32.add (local.get $ap) (i32.sub (local.get $al) (local.get $bl)))
                          (local.get $bp) (local.get $bl)))))
  (func $contains (param $ap i32) (param $al i32) (param $bp i32) (param $bl i32) (result i32)
    (local $i i32)
    (if (i32.gt_u (local.get $bl) (local.get $al)) (then (return (i32.const 0))))
    (loop $next
      (if (call $mem_eq (i32.add (local.get $ap) (local.get $i)) (local.get $bp) (local.get $bl))
        (then (return (i32.const 1))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $next (i32.le_u (local.get $i) (i32.sub (local.get $al) (local.get $bl)))))
    (i32.const 0))
  (func $set_has (param $p i32) (param $n i32) (param $id i32) (result i32)
    (local $lo i32) (local $hi i32) (local $mid i32) (local $v i32)
    (local.set $hi (local.get $n))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $lo) (local.get $hi)))
        (local.set $mid (i32.shr_u (i32.add (local.get $lo) (local.get $hi)) (i32.const 1)))
        (local.set $v (i32.load (i32.add (local.get $p) (i32.shl (local.get $mid) (i32.const 2)))))
        (if (i32.eq (local.get $v) (local.get $id)) (then (return (i32.const 1))))
        (if (i32.lt_u (local.get $v) (local.get $id))
          (then (local.set $lo (i32.add (local.get $mid) (i32.const 1))))
          (else (local.set $hi (local.get $mid))))
        (br $next)))
    (i32.const 0))
  (func $intersects (param $p i32) (param $n i32) (param $q i32) (param $m i32) (result i32)
    (local $i i32) (local $j i32) (local $a i32) (local $b i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (br_if $done (i32.ge_u (local.get $j) (local.get $m)))
        (local.set $a (i32.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $b (i32.load (i32.add (local.get $q) (i32.shl (local.get $j) (i32.const 2)))))
        (if (i32.eq (local.get $a) (local.get $b)) (then (return (i32.const 1))))
        (if (i32.lt_u (local.get $a) (local.get $b))
          (then (local.set $i (i32.add (local.get $i) (i32.const 1))))
          (else (local.set $j (i32.add (local.get $j) (i32.const 1)))))
        (br $next)))
    (i32.const 0))
"""
