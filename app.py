"""A local web app to track points without writing code: pick a frame, click points, watch the tracks, download them.

    pip install -r requirements-app.txt
    python app.py                      # serves on http://127.0.0.1:7860 and prints the address
    python app.py --port=8080 --host=0.0.0.0 --init_dir=./reference_model --device=cuda

The page takes the stock clip or an uploaded video (mp4/avi/mov). Clicks on the shown
frame add query points at that frame (on as many frames as you like); a grid of N points
or every k-th pixel of the frame can be tracked instead. Tracking runs with the
interactive options of the API (tracking.INTERACTIVE), which the settings change; a
progress bar counts the work, the overlay video plays in the page, and the tracks come
as .npz, .csv or TAP-Vid files (tracking/formats.py). Each browser tab writes into its
own temporary folder, removed an hour after the tab closes and when the app stops. The work
itself lives in tracking/session.py.
"""

import os
import sys
import tempfile
import time
import traceback
from types import SimpleNamespace

import torch

from nets.precision import PRECISIONS
from saverloader import CheckpointError
from tracking import INTERACTIVE
from tracking.model import checkpoint_file
from tracking.outputs import FORMATS
from tracking.queries import QueryError
from tracking.session import (
    QUERY_MODES,
    add_point,
    draw_queries,
    error_message,
    frame_queries,
    has_checkpoint,
    load_model,
    new_run_folder,
    open_video,
    read_frame,
    remove_point,
    track_clip,
)
from utils import cli
from utils.checks import check_count
from utils.distributed import default_device
from utils.errors import PipsError, SettingsError
from utils.files import beside, remove

try:
    import gradio as gr
except ImportError:  # main() says how to install it
    gr = None

HERE = os.path.dirname(os.path.abspath(__file__))
STOCK_VIDEO = os.path.join(HERE, 'stock_videos', 'bunny.mp4')
DEFAULT_MODEL = './reference_model'
MODE_LABELS = dict(zip(QUERY_MODES, ('the clicked points', 'a grid of N points on this frame',
                                     'every k-th pixel of this frame')))
HANDLED = (PipsError, ValueError, OSError, torch.cuda.OutOfMemoryError)
# gradio finds a handler's progress bar by its default value; this one follows the tracker's
# own tqdm bars: point-frames tracked, then frames of the overlay video
TRACKING_PROGRESS = gr.Progress(track_tqdm=True) if gr else None


def report(exc, video=None):
    """The page's one-line message for ``exc``; the terminal also gets the traceback of an
    unexpected error (a bug, not the user's input)."""
    if not isinstance(exc, HANDLED):
        traceback.print_exception(exc, file=sys.stderr)
    return error_message(exc, video)


def points_table(points):
    """Rows of the page's points table: number, frame, x, y."""
    return [[k, t, round(x, 1), round(y, 1)] for k, (t, x, y) in enumerate(points, start=1)]


class Page:
    """The page's handlers: each takes the components' values and returns theirs."""

    def __init__(self, init_dir, root):
        self.init_dir = init_dir
        self.root = root  # the sessions' folders live here

    def load(self, path, display_name=None):
        """A new video: (video, points, frame slider, frames-to-track slider, caption, status)."""
        try:
            video = open_video(path, display_name)
        except HANDLED as exc:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), report(exc)
        caption = (f'**{os.path.basename(display_name or path)}**: {video.num_frames} frames of '
                   f'{video.width}x{video.height} at {video.fps:.2f} fps')
        return (video, [], gr.update(maximum=video.num_frames - 1, value=0),
                gr.update(maximum=video.num_frames, value=video.num_frames), caption, '')

    def upload(self, path):
        if path is None:
            return (gr.skip(),) * 6
        return self.load(path, os.path.basename(path))

    def show(self, video, points, t, mode, N, grid_stride, image_H, image_W):
        """(frame t with its queries drawn, the points table, status: left as it is unless
        something is wrong)."""
        if video is None:
            return None, points_table(points), gr.skip()
        try:
            frame = read_frame(video, int(t))
            if mode == 'points':
                return draw_queries(frame, points, int(t), numbered=True), points_table(points), gr.skip()
            queries = frame_queries(mode, points, int(t), (video.height, video.width), N=N, grid_stride=grid_stride,
                                    image_size=(image_H, image_W))
            return draw_queries(frame, queries, int(t)), points_table(points), gr.skip()
        except HANDLED as exc:
            return gr.skip(), points_table(points), report(exc, video)

    def click(self, video, points, t, xy):
        if video is None:
            return points
        return add_point(points, int(t), *xy)

    def remove(self, points, number):
        try:
            return remove_point(points, int(number or 0)), ''
        except QueryError as exc:
            return points, report(exc)

    def track(self, video, points, t, mode, N, grid_stride, num_frames, S, iters, image_H, image_W, precision,
              device, weights, formats, session, progress=TRACKING_PROGRESS):
        """Track and return (status, overlay video, track files, the session's folder)."""
        session = session or tempfile.mkdtemp(prefix='session-', dir=self.root)
        if video is None:
            return 'error: choose a video first', None, None, session
        try:
            options = INTERACTIVE.replace(S=S, iters=iters, image_size=(image_H, image_W), precision=precision)
            queries = frame_queries(mode, points, int(t), (video.height, video.width), N=N, grid_stride=grid_stride,
                                    image_size=options.image_size)
            start = time.time()
            if weights == 'reference' and not has_checkpoint(self.init_dir):
                raise CheckpointError(f'no reference model in {self.init_dir}: run `sh get_reference_model.sh` and '
                                      'restart the app, or choose untrained weights under Settings')
            init_dir = self.init_dir if weights == 'reference' else ''
            _, paths = track_clip(load_model(init_dir, device), video, queries, num_frames=num_frames,
                                  options=options, out_dir=new_run_folder(session), formats=('npz', *formats),
                                  checkpoint=checkpoint_file(init_dir))
        except Exception as exc:  # every problem becomes the page's message; the app keeps serving
            return report(exc, video), None, None, session
        status = (f'Tracked {len(queries)} points through {int(num_frames)} frames in {time.time() - start:.1f} s '
                  f'on {device}.')
        if weights != 'reference':
            status += ' These are UNTRAINED weights: the tracks are meaningless.'
        return status, paths['mp4'], [path for name, path in paths.items() if name != 'mp4'], session


def model_notice(init_dir):
    """The page's note on the weights: empty when the reference model is there."""
    if has_checkpoint(init_dir):
        return ''
    return (f'**No reference model in `{init_dir}`.** Run `sh get_reference_model.sh` and restart the app, '
            'or choose *untrained weights* under Settings (their tracks are meaningless).')


def remove_session(folder):
    """gradio's callback when a tab closes: remove its folder."""
    if folder:
        remove(folder)


def build_page(init_dir, root, device):
    """The gradio Blocks of the app (sized for the stock clip, which every new tab loads first)."""
    page = Page(init_dir, root)
    stock_frames = open_video(STOCK_VIDEO).num_frames
    with gr.Blocks(title='PIPs++ point tracking', delete_cache=(3600, 3600), analytics_enabled=False) as blocks:
        gr.Markdown('# PIPs++ point tracking\nPick a video and a frame, click the points to track, then **Track**.')
        gr.Markdown(model_notice(init_dir), elem_id='model-notice')
        ui = SimpleNamespace(blocks=blocks, video=gr.State(None), points=gr.State([]),
                             session=gr.State(None, delete_callback=remove_session))
        with gr.Row():
            with gr.Column(scale=3):
                video_panel(ui, stock_frames)
            with gr.Column(scale=2):
                query_panel(ui)
                ui.settings = settings_panel(device, stock_frames)
                ui.run = gr.Button('Track', variant='primary', elem_id='track')
                ui.status = gr.Textbox(label='Status', interactive=False, elem_id='status', lines=1, max_lines=6)
                ui.downloads = gr.File(label='Download the tracks', file_count='multiple', elem_id='downloads',
                                       interactive=False)
        wire(page, ui)
    return blocks


def video_panel(ui, num_frames):
    """The video's caption, the frame slider, the frame to click on and the overlay video."""
    ui.caption = gr.Markdown(elem_id='video-info')
    ui.t = gr.Slider(0, num_frames - 1, value=0, step=1, label='Frame', elem_id='frame-slider')
    ui.frame = gr.Image(label='Click to add a query point at this frame', interactive=False, elem_id='frame',
                        buttons=[])
    ui.overlay = gr.Video(label='Tracks', elem_id='overlay', interactive=False, autoplay=True, loop=True)


def query_panel(ui):
    """The video's source, what to track, and the clicked points with their removal."""
    with gr.Row(equal_height=True):
        ui.upload = gr.File(label='Upload a video (mp4, avi, mov)', file_types=['.mp4', '.avi', '.mov'],
                            type='filepath', height=120, elem_id='upload', scale=3)
        ui.stock = gr.Button('Use the stock clip', size='sm', elem_id='stock', scale=1)
    ui.mode = gr.Radio([(label, key) for key, label in MODE_LABELS.items()], value='points', label='Track',
                       elem_id='query-mode')
    with gr.Row():
        ui.N = gr.Number(1024, label='N (grid)', precision=0, minimum=4, elem_id='grid-N')
        ui.grid_stride = gr.Number(16, label='k (every k-th pixel)', precision=0, minimum=1, elem_id='grid-stride')
    ui.table = gr.Dataframe(headers=['#', 'frame', 'x', 'y'], label='Clicked points', interactive=False,
                            elem_id='points', max_height=220)
    with gr.Row(equal_height=True):
        ui.number = gr.Number(1, label='Point #', precision=0, minimum=1, min_width=80)
        ui.remove = gr.Button('Remove point', size='sm')
        ui.clear = gr.Button('Clear points', size='sm')


def settings_panel(device, num_frames):
    """The tracking settings: {name: component}, defaulting to ``tracking.INTERACTIVE``."""
    devices = list(dict.fromkeys(['cpu', *(['cuda'] if torch.cuda.is_available() else []), device]))
    with gr.Accordion('Settings', open=True):
        num_frames = gr.Slider(2, num_frames, value=num_frames, step=1, label='Frames to track (from the start)',
                               elem_id='num-frames')
        with gr.Row():
            S = gr.Number(INTERACTIVE.S, label='S (window)', precision=0, minimum=2, elem_id='S', min_width=80)
            iters = gr.Number(INTERACTIVE.iters, label='iters', precision=0, minimum=1, elem_id='iters', min_width=80)
            image_H = gr.Number(INTERACTIVE.image_size[0], label='model H', precision=0, minimum=128,
                                elem_id='image-H', min_width=80)
            image_W = gr.Number(INTERACTIVE.image_size[1], label='model W', precision=0, minimum=128,
                                elem_id='image-W', min_width=80)
        with gr.Row():
            precision = gr.Dropdown(list(PRECISIONS), value=INTERACTIVE.precision, label='precision', min_width=80)
            device = gr.Dropdown(devices, value=device, label='device', min_width=80)
            formats = gr.CheckboxGroup([f for f in FORMATS if f != 'npz'], value=['csv'], label='besides the .npz',
                                       elem_id='formats', scale=2)
        weights = gr.Radio([('reference model', 'reference'), ('untrained weights (meaningless tracks)', 'untrained')],
                           value='reference', label='weights', elem_id='weights')
    return dict(num_frames=num_frames, S=S, iters=iters, image_H=image_H, image_W=image_W, precision=precision,
                device=device, weights=weights, formats=formats)


def wire(page, ui):
    """Connect the components of ``ui`` to the page's handlers."""
    settings = ui.settings
    preview_in = [ui.video, ui.points, ui.t, ui.mode, ui.N, ui.grid_stride, settings['image_H'], settings['image_W']]
    preview_out = [ui.frame, ui.table, ui.status]
    loaded = [ui.video, ui.points, ui.t, settings['num_frames'], ui.caption, ui.status]

    def preview(event):
        event.then(page.show, preview_in, preview_out)

    preview(ui.blocks.load(lambda: page.load(STOCK_VIDEO), None, loaded))
    preview(ui.stock.click(lambda: page.load(STOCK_VIDEO), None, loaded))
    preview(ui.upload.upload(page.upload, ui.upload, loaded))
    for component in (ui.t, ui.mode, ui.N, ui.grid_stride):
        component.change(page.show, preview_in, preview_out)

    def click(video, points, t, event: gr.SelectData):
        return page.click(video, points, t, event.index)

    preview(ui.frame.select(click, [ui.video, ui.points, ui.t], ui.points))
    preview(ui.remove.click(page.remove, [ui.points, ui.number], [ui.points, ui.status]))
    preview(ui.clear.click(lambda: [], None, ui.points))

    ui.run.click(page.track, [*preview_in[:6], *settings.values(), ui.session],
                 [ui.status, ui.overlay, ui.downloads, ui.session])


def main(port=7860, host='127.0.0.1', init_dir=DEFAULT_MODEL, device=None):
    """Serve the app on http://<host>:<port> until Ctrl-C. --init_dir: the model's folder
    (default ./reference_model, also found beside app.py); --device: the default device
    offered (CUDA when available)."""
    port = check_count('--port', port, minimum=1, maximum=65535)
    if gr is None:
        raise SettingsError('the web app needs gradio: pip install -r requirements-app.txt')
    os.environ.setdefault('GRADIO_ANALYTICS_ENABLED', 'False')  # the app sends nothing anywhere
    init_dir = beside(str(init_dir), DEFAULT_MODEL, HERE)
    root = tempfile.mkdtemp(prefix='pips2-app-')
    try:
        blocks = build_page(init_dir, root, default_device(device))
        blocks.queue(default_concurrency_limit=1)
        blocks.launch(server_name=host, server_port=port, allowed_paths=[root], inbrowser=False,
                      footer_links=[])
    finally:
        remove(root)


if __name__ == '__main__':
    cli.run(main)
