"""Track points through many videos: a folder, a glob or a .txt list, on one or many GPUs.

    python track_videos.py --videos=/data/clips --out_dir=./tracks
    python track_videos.py --videos='/data/**/*.mp4' --grid_stride=16 --overlay=True
    torchrun --nproc_per_node=8 track_videos.py --videos=list.txt --queries_dir=./queries

Each video is tracked whole (windows of --S frames) and written to <out_dir>/<name>.npz
(``trajs`` T,N,2 float32 in the video's pixels, ``queries`` N,3 (t, x, y), ``fps``,
``settings``, and ``visibs`` T,N bool and ``confidence`` T,N float32 unless
--confidence=False), atomically, with the other --formats chosen (csv, tapvid:
tracking/formats.py); with --overlay=True also <out_dir>/<name>.mp4, the video with the
tracks drawn (H.264), points predicted not visible as hollow rings. The arguments, the
videos' names, the output folder and that no output would overwrite an input are checked
before any work; a folder or glob never takes the files of --out_dir. Videos whose outputs
exist with the same settings are skipped, so an interrupted batch goes on where it stopped
when run again; a rerun with other settings is refused. A video that cannot be read, whose
queries are bad or whose outputs cannot be written is reported and the batch goes on; the
summary at the end lists the failures and the exit status is 1 if there were any. Under
torchrun the videos are split over the ranks, each tracked once.
The library behind it is tracking/batch.py.
"""

from tracking import INTERACTIVE
from tracking.batch import run_batch
from utils import cli
from utils.distributed import Ranks


def main(videos='./stock_videos', out_dir='./tracks', S=48, iters=16, image_size=(512, 896), N=1024,
         grid_stride=0, queries_dir=None, overlay=False, init_dir='./reference_model', device=None, stride=8,
         precision='fp32', formats='npz', confidence=True, consistency=True):
    """Track every video of --videos (a folder, a glob pattern or a .txt list) into
    --out_dir. Queries: a grid of N points on frame 0 (default), --grid_stride=k (every
    k-th pixel of frame 0), or --queries_dir holding <name>.csv per video (t,x,y rows in
    the video's pixels, a header line allowed). --overlay=True also writes <name>.mp4.
    Options as demo.py: --S, --iters, --image_size, --init_dir, --device, --precision,
    --formats (npz,csv,tapvid), --confidence, --consistency."""
    options = INTERACTIVE.replace(S=S, iters=iters, image_size=image_size, precision=precision,
                                  confidence=confidence, consistency=consistency)
    ranks = Ranks.start(device)
    try:
        run_batch(videos, out_dir, options, ranks=ranks, init_dir=init_dir, overlay=overlay, N=N,
                  grid_stride=grid_stride, queries_dir=queries_dir, stride=stride, formats=formats)
    finally:
        ranks.stop()


if __name__ == '__main__':
    cli.run(main)
