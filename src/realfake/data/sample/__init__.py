"""A deterministic synthetic "real vs GAN faces" sample in the Kaggle 140k layout.

The sample stands in for the real data set: both classes draw their *content*
from one distribution of cartoon faces (:mod:`.drawing`); they differ only in
how that content is brought up to full resolution (:mod:`.upsampling`):

* real: an ideal resampler (Lanczos) from the base resolution to ``image_size``;
* fake: a GAN-like up-sampler, a stride-2 transposed convolution with a seeded
  4x4 kernel followed by a seeded 3x3 convolution (fixed per data-set seed, like
  a generator's weights), mixed as ``ideal + strength * (gan - ideal)``.

The transposed convolution leaves the periodic up-sampling fingerprint of real
generators (spectral replicas and peaks at the Nyquist frequencies; Frank et
al. 2020, Durall et al. 2020), while global statistics (channel means and
spread, JPEG size) stay the same for both classes: the kernels keep the DC
gain, and the 3x3 kernel's sharpening is calibrated per seed so that fakes
compress to the same JPEG size as reals. Sensor noise and JPEG quality are
drawn from the same distributions for both classes.

A *held-out* fake family (:func:`generate_heldout`) tests whether a detector
generalises to a generator it never saw: the same content, sensor noise and
JPEG quality distributions, but a different up-sampler (``nearest`` or
``bilinear`` up-sampling, each followed by its own seeded 3x3 convolution
calibrated to the reals' JPEG size). It draws from its own random streams, so
generating it never changes the train/valid/test files.

Modules: :mod:`.config` (what to generate), :mod:`.drawing` (content),
:mod:`.upsampling` (the class difference), :mod:`.generate` (writing the
files), :mod:`.heldout` (the held-out folder's index). The package imports none
of them itself, so a stage that only reads the held-out index does not depend
on the generator's code.
"""
