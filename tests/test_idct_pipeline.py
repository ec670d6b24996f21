"""The common datapath shape of hdl.jpeg.rtl.idct's passes against hdl.jpeg.idct's 1-D passes:
same integers, for every size, at full-range inputs."""
import numpy as np

from hdl.jpeg import idct as G
from hdl.jpeg.rtl.idct import OUT_POS, flat_1d

REF = {3: G._islow_1d, 2: G._red4_1d, 1: G._red2_1d, 0: lambda d: [d[0]]}


def test_flat_shape_matches_libjpeg_passes():
    rng = np.random.default_rng(1)
    vecs = [[int(v) for v in rng.integers(-(1 << 24), 1 << 24, 8)] for _ in range(300)]
    vecs += [[int(v) for v in rng.choice([-(1 << 19), (1 << 19) - 1, 0, 1, -1], 8)]
             for _ in range(300)]
    for d in vecs:
        for sz, ref in REF.items():
            got = flat_1d(d, sz)
            want = ref(d)
            assert [got[i] for i in OUT_POS[sz]] == list(want), (sz, d)
