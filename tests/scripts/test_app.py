"""app.py in a real browser (headless Chromium, Selenium): pick frame 5, click two points, track
them, download the CSV and find the tracks the Python API gives; a broken upload and a missing
model are one clear message on the page, and the app keeps serving. Without gradio the app
says how to install it.

The browser tests are slow (a browser, a server, tracking):
``python -m pytest -m slow tests/scripts/test_app.py``;
``.ci/run --browser`` installs the browser and runs them. With
``PIPS_WEBAPP_SCREENSHOT=docs/webapp.png`` the first test also writes the README's screenshot.
"""

import os
import time

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.browser import WINDOW, start_app, start_chromium, stop_app
from tests.fixtures.scripts import ROOT
from tracking import INTERACTIVE, Tracker
from tracking.formats import read_csv
from tracking.session import load_model
from utils.video import read_video

CLIP = os.path.join(ROOT, 'stock_videos', 'bunny.mp4')
SMALL = dict(S=8, iters=2, image_size=(128, 224))
NUM_FRAMES, QUERY_FRAME = 16, 5
CLICKS = [(200, 120), (420, 260)]  # video pixels on the 640x360 clip
TIMEOUT = 120
MISSING_MODEL = './no_reference_model_here'  # relative to the repository, where the app runs


def wait(driver, condition, timeout=TIMEOUT, what='the page'):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: condition(), f'waiting for {what}')


def by_css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def text_of(driver, elem_id):
    """The text of a Markdown component (without the progress note gradio lays over it)."""
    return ' '.join(element.text for element in by_css(driver, f'#{elem_id} .prose'))


def status(driver):
    """The status line's text."""
    return ' '.join(box.get_attribute('value') for box in by_css(driver, '#status textarea'))


def type_number(driver, selector, value):
    """Replace the number in the input at ``selector`` as a person types it."""
    from selenium.webdriver.common.keys import Keys
    field, = by_css(driver, selector)
    field.send_keys(Keys.CONTROL, 'a')
    field.send_keys(str(value), Keys.ENTER)
    field.send_keys(Keys.TAB)


def click_video_pixel(driver, x, y, size=(640, 360)):
    """Click the shown frame where video pixel (x, y) is drawn."""
    from selenium.webdriver.common.action_chains import ActionChains
    image, = by_css(driver, '#frame img')
    shown_w, shown_h = image.size['width'], image.size['height']
    dx = (x + 0.5) * shown_w / size[0] - shown_w / 2
    dy = (y + 0.5) * shown_h / size[1] - shown_h / 2
    ActionChains(driver).move_to_element_with_offset(image, round(dx), round(dy)).click().perform()


def frame_source(driver):
    images = by_css(driver, '#frame img')
    return images[0].get_attribute('src') if images else None


def table_rows(driver):
    return [row.text for row in by_css(driver, '#points [role=row][data-index]') if row.text.strip()]


def downloaded(folder, suffix):
    names = [n for n in os.listdir(folder) if n.endswith(suffix)]
    return os.path.join(folder, names[0]) if names else None


@pytest.fixture
def browser(tmp_path):
    driver = start_chromium(tmp_path / 'downloads')
    yield driver
    driver.quit()


@pytest.fixture
def app_without_model():
    """app.py with no reference model where --init_dir points."""
    process, url = start_app(f'--init_dir={MISSING_MODEL}', '--device=cpu')
    yield url
    output = stop_app(process)
    assert 'Traceback' not in output, output


def open_page(driver, url):
    driver.get(url)
    wait(driver, lambda: 'bunny.mp4' in text_of(driver, 'video-info') and frame_source(driver), what='the stock clip')


def save_screenshot(driver, path):
    """The whole page as a small PNG (900 px wide, 256 colours)."""
    height = driver.execute_script('return document.documentElement.scrollHeight')
    driver.set_window_size(WINDOW[0], height + 120)
    driver.execute_script('window.scrollTo(0, 0)')
    time.sleep(1)
    driver.save_screenshot(str(path))
    with Image.open(path) as shot:
        small = shot.convert('RGB').resize((900, round(900 * shot.height / shot.width)), Image.Resampling.LANCZOS)
    small.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


@pytest.mark.slow
def test_clicked_points_tracked_in_the_browser_equal_the_python_api(browser, app_without_model, tmp_path, one_thread):
    open_page(browser, app_without_model)
    assert 'No reference model in' in text_of(browser, 'model-notice')

    before = frame_source(browser)
    type_number(browser, '#frame-slider input[type=number]', QUERY_FRAME)
    wait(browser, lambda: frame_source(browser) != before, what='frame 5')
    for count, (x, y) in enumerate(CLICKS, start=1):
        click_video_pixel(browser, x, y)
        wait(browser, lambda n=count: len(table_rows(browser)) == n, what=f'point {count} in the table')

    type_number(browser, '#num-frames input[type=number]', NUM_FRAMES)
    type_number(browser, '#S input', SMALL['S'])
    type_number(browser, '#iters input', SMALL['iters'])
    type_number(browser, '#image-H input', SMALL['image_size'][0])
    type_number(browser, '#image-W input', SMALL['image_size'][1])
    untrained, = [label for label in by_css(browser, '#weights label') if 'untrained' in label.text]
    untrained.click()
    by_css(browser, '#track')[0].click()
    wait(browser, lambda: 'Tracked' in status(browser) or 'error' in status(browser), what='the tracking to finish')
    message = status(browser)
    assert f'Tracked 2 points through {NUM_FRAMES} frames' in message and 'UNTRAINED' in message, message
    wait(browser, lambda: by_css(browser, '#overlay video'), what='the overlay video')
    if os.environ.get('PIPS_WEBAPP_SCREENSHOT'):
        save_screenshot(browser, os.environ['PIPS_WEBAPP_SCREENSHOT'])

    link, = by_css(browser, '#downloads a[href$=".csv"]')
    link.click()
    folder = tmp_path / 'downloads'
    wait(browser, lambda: folder.exists() and downloaded(folder, '.csv'), what='the CSV download')
    from_page, _, _ = read_csv(downloaded(folder, '.csv'))  # T,2,2
    assert from_page.shape == (NUM_FRAMES, 2, 2)
    # the queries are where the clicks landed (the page rounds to whole pixels)
    np.testing.assert_allclose(from_page[QUERY_FRAME], CLICKS, atol=1.5)
    queries = np.concatenate([np.full((2, 1), QUERY_FRAME), from_page[QUERY_FRAME]], axis=1)
    tracker = Tracker(load_model('', 'cpu'), INTERACTIVE.replace(**SMALL))
    from_api = tracker(read_video(CLIP)[:NUM_FRAMES], queries).tracks
    np.testing.assert_array_equal(from_page, from_api)  # one CPU thread on both sides: bit-identical


@pytest.mark.slow
def test_broken_upload_and_missing_model_are_one_message_and_the_app_keeps_serving(browser, app_without_model,
                                                                                    tmp_path):
    broken = tmp_path / 'broken.mp4'
    broken.write_bytes(b'this is not a video')
    open_page(browser, app_without_model)
    upload, = by_css(browser, '#upload input[type=file]')
    upload.send_keys(str(broken))
    wait(browser, lambda: 'error' in status(browser), what='the upload error')
    assert status(browser).startswith('error: broken.mp4: cannot open as a video'), status(browser)
    assert 'Traceback' not in browser.page_source

    click_video_pixel(browser, 320, 180)  # the stock clip is still there to work on
    wait(browser, lambda: len(table_rows(browser)) == 1, what='a point on the stock clip')
    by_css(browser, '#track')[0].click()  # with the reference model, which is missing
    wait(browser, lambda: 'no reference model' in status(browser), what='the missing-model error')
    assert status(browser) == (f'error: no reference model in {MISSING_MODEL}: run `sh get_reference_model.sh` '
                               'and restart the app, or choose untrained weights under Settings')
    assert 'Traceback' not in browser.page_source
    time.sleep(0.5)
    assert by_css(browser, '#frame img') and 'bunny.mp4' in text_of(browser, 'video-info')



def test_without_gradio_the_app_says_how_to_install_it(tmp_path, run_script):
    (tmp_path / 'gradio').mkdir()  # a gradio that cannot be imported, first on the path
    (tmp_path / 'gradio' / '__init__.py').write_text('raise ImportError("no gradio here")\n')
    out = run_script('app.py', env={'PYTHONPATH': str(tmp_path)})
    assert out.returncode == 1
    assert out.stderr == 'error: the web app needs gradio: pip install -r requirements-app.txt\n'


@pytest.mark.parametrize('port, shown', [('abc', "'abc'"), ('99999', '99999')])
def test_a_bad_port_is_one_line_before_the_page_is_built(run_script, port, shown):
    out = run_script('app.py', f'--port={port}')
    assert out.returncode == 1
    assert out.stderr == f'error: --port must be an integer from 1 to 65535; got {shown}\n'
