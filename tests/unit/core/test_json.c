/* tp__json_size: the encoded size of a value, without encoding it. */
#include <criterion/criterion.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/patch.h"

static json_t *
random_value(unsigned *seed, int depth, int reals)
{
    *seed = *seed * 1103515245u + 12345u;
    unsigned r = (*seed >> 16) % (depth > 3 ? 6 : 8);
    switch (r) {
    case 0: return json_null();
    case 1: return json_true();
    case 2: return json_false();
    case 3: return json_integer((json_int_t)(*seed % 2000000) - 1000000);
    case 4: {
        char s[12];
        for (int i = 0; i < 11; i++)
            s[i] = (char)(1 + (*seed >> (i % 16)) % 127); /* controls, quotes, backslashes */
        s[11] = '\0';
        return json_string(s);
    }
    case 5: return reals ? json_real((double)(*seed % 100000) / 7.0) : json_integer(LLONG_MIN);
    case 6: {
        json_t *a = json_array();
        for (unsigned i = 0; i < *seed % 4; i++)
            json_array_append_new(a, random_value(seed, depth + 1, reals));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (unsigned i = 0; i < *seed % 4; i++) {
            char key[8];
            snprintf(key, sizeof key, "k\"%u", i);
            json_object_set_new(o, key, random_value(seed, depth + 1, reals));
        }
        return o;
    }
    }
}

Test(json, size_is_exact_without_reals_and_an_upper_bound_with_them)
{
    unsigned seed = 42;
    for (int i = 0; i < 5000; i++) {
        int reals = i % 2;
        json_t *v = random_value(&seed, 0, reals);
        size_t want = json_dumpb(v, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
        size_t got = tp__json_size(v);
        if (reals)
            cr_assert_geq(got, want);
        else
            cr_assert_eq(got, want, "value %d: %zu != %zu", i, got, want);
        json_decref(v);
    }
}
