"""Reserved column names of the offline engines' frames (entity keys and fields use their own names).

They are shared by the point-in-time algorithm (offline/pit.py) and the serving stages run on its
output (serving/training.py), so they live below both.
"""

EVENT_TIME_US = "__fsq_event_us"
QUERY_TIME_US = "__fsq_query_us"
ROW_ID = "__fsq_row"
