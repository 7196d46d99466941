"""Query files read as the user meant them, or one line naming the file, the line and the
problem; query arrays checked alike."""

import numpy as np
import pytest

from tracking.queries import QueryError, check_queries, check_queries_fit, describe_queries, read_queries

SIZE = (10, 360, 640)  # T, H, W


@pytest.mark.parametrize('text', [
    't,x,y\n0,1.5,2\n3,4,5\n',
    '\ufeffT, X, Y\r\n0, 1.5, 2\r\n3,4,5\r\n',  # a spreadsheet's BOM, spaces and CRLF
    '# my points\n\n0,1.5,2  # first\n\n3,4,5\n\n',
])
def test_good_csv_files(tmp_path, text):
    path = tmp_path / 'q.csv'
    path.write_text(text, newline='')
    queries = read_queries(path, size=SIZE)
    np.testing.assert_array_equal(queries, [[0, 1.5, 2], [3, 4, 5]])
    assert queries.dtype == np.float64


@pytest.mark.parametrize('text, where, problem', [
    ('10,20\n30,40\n', 'line 1', "('10,20'): 2 values, not 3"),  # x,y without the frame
    ('0,1,2\nt,x,y\n1,2,3\n', 'line 2', "('t,x,y'): a header is allowed only as the first line"),
    ('x,y,t\n1,2,0\n', 'line 1', "('x,y,t'): a header must name the columns t,x,y, in this order"),
    ('0;1;2\n', 'line 1', "('0;1;2'): the values must be separated by commas"),
    ('0\t1\t2\n', 'line 1', "('0\\t1\\t2'): the values must be separated by commas"),
    ('0,1,2\n,,\n', 'line 2', "(',,'): not three numbers"),
    ('0,1,2\n\n1,2\n', 'line 3', "('1,2'): 2 values, not 3"),
    ('0,1,2,1\n', 'line 1', "('0,1,2,1'): 4 values, not 3"),
    ('t,x,y\n-1,2,3\n', 'line 2', '(-1, 2, 3): the frame t must be a non-negative integer'),
    ('0.5,2,3\n', 'line 1', '(0.5, 2, 3): the frame t must be a non-negative integer'),
    ('0,nan,3\n', 'line 1', '(0, nan, 3): NaN or infinite values'),
    ('0,1,1\n10,2,3\n', 'line 2', '(10, 2, 3): the frame t is past the end (frames 0..9)'),
    ('0,1,1\n\n0,640,3\n', 'line 3',
     '(0, 640, 3): the point lies outside the 640x360 frame (x in 0..639, y in 0..359)'),
    ('0,-0.5,3\n', 'line 1', '(0, -0.5, 3): the point lies outside the 640x360 frame'),
])
def test_csv_files_that_mean_something_else_are_one_line(tmp_path, text, where, problem):
    path = tmp_path / 'q.csv'
    path.write_text(text)
    with pytest.raises(QueryError) as info:
        read_queries(path, size=SIZE)
    message = str(info.value)
    assert message.startswith(f'{path}, {where} {problem}') and '\n' not in message


@pytest.mark.parametrize('make, message', [
    (lambda d: (d / 'q.csv').write_text('# none\n\n') and d / 'q.csv', ': no queries in this file'),
    (lambda d: (d / 'q.csv').write_bytes(b'\xff\xfe\x00\x81') and d / 'q.csv', ': not a text file'),
    (lambda d: d / 'missing.csv', ': no such file'),
    (lambda d: (d / 'q.json').write_text('[]') and d / 'q.json', ': queries are read from .csv files (t,x,y lines) or '
                                                                 '.npy files (an N,3 array); got .json'),
    (lambda d: np.save(d / 'q.npy', np.zeros((2, 2))) or d / 'q.npy', ': queries must be an N,3 array of numbers'),
    (lambda d: np.save(d / 'q.npy', np.array([[0, 1, 1], [0, 1, 400.0]])) or d / 'q.npy',
     ', row 1 (0, 1, 400): the point lies outside the 640x360 frame'),
    (lambda d: (d / 'q.npy').write_bytes(b'garbage') and d / 'q.npy', ': not a readable .npy array'),
])
def test_bad_query_files_name_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(QueryError) as info:
        read_queries(path, size=SIZE)
    assert str(info.value).startswith(f'{path}{message}')


def test_npy_queries_read_as_float64(tmp_path):
    np.save(tmp_path / 'q.npy', np.array([[0, 10, 20], [4, 30, 40]], dtype=np.int32))
    queries = read_queries(tmp_path / 'q.npy', size=SIZE)
    assert queries.dtype == np.float64 and queries.tolist() == [[0, 10, 20], [4, 30, 40]]


def test_array_queries_name_the_first_bad_row():
    with pytest.raises(QueryError, match=r'^query 2 \(0, 1, inf\): NaN or infinite values$'):
        check_queries([[0, 1, 1], [1, 2, 2], [0, 1, np.inf], [-1, 0, 0]])
    with pytest.raises(QueryError, match=r'^video.npz, query 1 \(5, 1, 1\): the frame t is past the end'):
        check_queries_fit(np.array([[0, 1, 1], [5, 1, 1]]), 5, 10, 10, where='video.npz')
    check_queries_fit(np.array([[0, 0, 0], [99, 9, 9]]), None, 10, 10)  # any frame when the length is unknown


def test_a_queries_file_is_described_by_its_content(tmp_path):
    path = tmp_path / 'q.csv'
    path.write_text('0,1,2\n')
    first = describe_queries(path, 1024, 0)
    assert first.startswith('q.csv sha256:') and describe_queries(path, 16, 8) == first
    path.write_text('0,1,3\n')
    assert describe_queries(path, 1024, 0) != first
    assert describe_queries(None, 1024, 0) == 'grid of 1024 points on frame 0'
    assert describe_queries(None, 1024, 8) == 'every 8th pixel of frame 0'
