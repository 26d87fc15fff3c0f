-- 004: the machine's speed when a baseline was taken: seconds of a fixed reference
-- workload (ezdxf.readfile of the baseline's large DXF, median over the rounds). A
-- regression compares p95 / calibration with the previous row's, so a slower or busier
-- machine does not pass for a slower converter. NULL for rows taken before 004.
ALTER TABLE perf_baselines ADD COLUMN calibration_seconds double precision;
