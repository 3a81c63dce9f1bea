"""Pillow's codecs handed a whole image per call, so that they run without the GIL throughout.

Pillow feeds a decoder, and drains an encoder, ImageFile.MAXBLOCK bytes at a time (64 KiB by
default) and takes the GIL back between blocks. Beside a thread that holds the GIL often (the
proxy's event loop, the idle-priority background decode of `faces.prefetch`), the codec then
waits for the GIL at every block. Measured on 12 MP JPEGs, two cores:

- the detection canvas (1/4-scale decode) beside the background decode: 51-57 ms, 27 alone;
  26-30 ms beside it in one block;
- the same decode beside a Python thread that never waits: 123 ms, 31 in one block;
- a quality-92 encode beside that thread: 85 ms, 51 in one block (47 alone).

With CODEC_BLOCK, the decoder gets a phone photo's whole stream in one call and the encoder room
for the whole file, so each releases the GIL once or a few times. Larger blocks would cost small
conversions more (`np.asarray(image)` fills a fresh buffer of at least a block). Importing this
module sets the block; every module that runs Pillow's codecs on uploads imports it.
"""

from __future__ import annotations

from PIL import ImageFile

CODEC_BLOCK = 4 * 1024 * 1024  # bytes: a 12 MP phone JPEG is 2-5 MB

# Pillow reads MAXBLOCK when it opens an image (its decodermaxblock) and when it saves one.
ImageFile.MAXBLOCK = CODEC_BLOCK
