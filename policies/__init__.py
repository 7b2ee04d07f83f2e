"""The rules of our terms as pure functions and constants (plan limits today; windows, retention, FIFO,
refunds, fees and VAT as they arrive), each citing its source. They take ``now`` as an argument and
import nothing of ours and no framework: the domain and the sweeper apply them.
"""
