# pprof-groups.awk: sums the flat seconds of `go tool pprof -top -nodecount=100000`
# by category (benchmarks/profile.sh, "Where the time goes" in README.md).
function cat(f) {
	if (f ~ /Syscall6$|^syscall\.|RawSyscall/) return "syscalls"
	if (f ~ /^runtime\.(futex|usleep|nanosleep|osyield)/) return "runtime futex/sleep (syscalls of the scheduler)"
	if (f ~ /^runtime\.(mallocgc|nextFree|newobject|makeslice|growslice|mcache|mcentral|mheap|mspan|memclr|heapBits|gc|scanobject|greyobject|markBits|findObject|sweep|bgsweep|scav|wbBuf|bulkBarrier|typePointers|spanOf|pageIndex|memmove|SetFinalizer|addspecial|removespecial|addfinalizer|runfinq|queuefinalizer)|^runtime\.\(\*(mcache|mcentral|mheap|mspan|gcWork|gcControllerState|sweepLocked|gcBits|pageAlloc|spanSet|fixalloc|limiterEvent|gcCPULimiterState|scavengerState|stackScanState|wbBuf|specialsIter|activeSweep|sweepLocker)\)/) return "runtime: malloc, GC, finalizers"
	if (f ~ /^runtime\.(schedule|findRunnable|netpoll|park|ready|goready|wakep|startm|stopm|mcall|gopark|goexit|newproc|execute|runqget|runqput|runqgrab|runqsteal|stealWork|casgstatus|lock|unlock|resetspinning|checkTimers|notesleep|notewakeup|entersyscall|exitsyscall|reentersyscall|procyield|handoffp|acquirep|releasep|mPark|gfget|gfput|copystack|newstack|morestack|adjust|findfunc|funcspdelta|pcvalue|step|gentraceback|systemstack|sysmon|retake|injectglist|globrunq|netpollready|netpollblock|netpollunblock|nanotime|timeSleepUntil|pidle|mput|mget|gcstopm|runSafePoint|preempt|signalM|save|gogo|goschedIfBusy|Gosched|goyield|traceback|readvarint|funcInfo|funcdata)|^runtime\.\(\*(timer|timers|unwinder|m|p|g|randomEnum|randomOrder|lfstack|guintptr|puintptr|muintptr|gList|gQueue|pollDesc|pollCache|timeTimer)\)|^internal\/runtime\/(atomic|sys)|^runtime\.(timer|modtimer|deltimer|resettimer|addtimer|siftup|siftdown|dodeltimer|adjusttimers|runtimer|unlockOSThread|lockOSThread)/) return "runtime: scheduler, netpoller, stacks, timers"
	if (f ~ /^runtime\.(findfunc|adjust|getcallerfp|procyield|lock2|unlock2|releasem|acquirem|closechan|chansend|chanrecv|selectgo|sema|semacquire|semrelease|notifyList|wakeNetPoller|fastrand|rand|cheaprand|pcdatavalue|funcline|callers|tracebackPCs)|^runtime\.\(\*(semTable|semaRoot|hchan|waitq|sudog)\)/) return "runtime: scheduler, netpoller, stacks, timers"
	if (f ~ /^runtime\.(typedmemclr|typedmemmove|memclrNoHeapPointers)|^runtime\.\(\*(spanSet|mspan|gcBits)\)|^internal\/runtime\/gc/) return "runtime: malloc, GC, finalizers"
	if (f ~ /longhaul-proxy\/longhaul/) return "longhaul's own code"
	if (f ~ /prometheus|zap|otel|protobuf/) return "metrics/logging libraries"
	if (f ~ /^(net|internal\/poll|syscall|os|context|time|sync|io|bufio|crypto|strconv|strings|bytes|sort|slices|maps|fmt|errors|unique|hash|encoding|golang.org\/x)/) return "stdlib (net, poll, context, sync, time)"
	if (f ~ /^runtime|^internal/) return "runtime: other"
	return "other"
}
NR > 6 && $1 ~ /s$/ {
	f = $6; for (i = 7; i <= NF; i++) f = f " " $i
	v = $1; unit = 1
	if (v ~ /ms$/) { unit = 0.001; sub(/ms$/, "", v) } else sub(/s$/, "", v)
	s[cat(f)] += v * unit; total += v * unit
}
END { for (k in s) printf "%6.3f s %5.1f%%  %s\n", s[k], 100 * s[k] / total, k; printf "%6.3f s total\n", total }
