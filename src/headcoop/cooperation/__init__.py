"""The cooperation study: do heads compete or cooperate, task by task?

Models of every registered task in their usual shape (`study.SHAPES`), over several seeds,
are trained (or reused), analysed, and their interactions (`headcoop.metrics.interactions`)
read into one table, `cooperation.csv`, with a page across tasks (`cooperation_report`).
"""
