using Microsoft.Win32.SafeHandles;

namespace TcpFork.Tests;

/// <summary>The rate limit of repeated warnings, on its own with a clock the test sets (no server needed).</summary>
public class RepeatedWarningsTests
{
    [Fact]
    public void The_first_is_written_repeats_are_counted_once_a_window_and_summarised_when_cleared()
    {
        string path = Path.GetTempFileName();
        try
        {
            using (SafeFileHandle file = File.OpenHandle(path, FileMode.Truncate, FileAccess.Write))
            using (var memory = new ParentMemory())
            {
                var log = new ServerLog(LogLevel.Normal, (int)file.DangerousGetHandle());
                var repeats = new RepeatedWarnings(log, memory);
                long now = 1_000_000;
                for (int i = 0; i < 250; i++, now += 100) // 25 s of one failure every 100 ms
                {
                    if (repeats.First(Repeat.AcceptPaused, Errno.EMFILE, now))
                    {
                        log.AcceptPaused(Errno.EMFILE, TimeSpan.FromMilliseconds(i));
                    }
                    repeats.Tick(now);
                }
                repeats.Cleared(Repeat.AcceptPaused, now);
                Assert.True(repeats.First(Repeat.AcceptPaused, Errno.EMFILE, now), "after clearing, the next one is written at once");
                Assert.True(repeats.First(Repeat.AcceptPaused, Errno.ENFILE, now + 1), "another cause is written at once");
                repeats.Cleared(Repeat.AcceptPaused, now + 2); // nothing counted: no line
                log.Flush();
            }
            string[] lines = File.ReadAllLines(path);
            Assert.Equal(
            [
                "tcpfork: warning: accept: Too many open files; pausing 0 ms",
                "tcpfork: warning: accept: Too many open files; repeated 100 times in the last 10 s",
                "tcpfork: warning: accept: Too many open files; repeated 100 times in the last 10 s",
                "tcpfork: warning: accept: Too many open files; repeated 49 times in the last 5 s; cleared",
            ], lines);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_run_without_repeats_for_a_window_ends_and_the_next_is_written_at_once()
    {
        using var memory = new ParentMemory();
        var log = new ServerLog(LogLevel.Normal, -1);
        var repeats = new RepeatedWarnings(log, memory);
        Assert.True(repeats.First(Repeat.LaunchFailed, Errno.EAGAIN, 0, "fork"));
        Assert.False(repeats.First(Repeat.LaunchFailed, Errno.EAGAIN, 5_000, "fork"));
        Assert.True(repeats.First(Repeat.TableFull, 0, 5_000), "kinds are counted apart");
        repeats.Tick(15_000); // writes the one repeat, the window starts again
        repeats.Tick(25_000); // a whole window without a repeat: the run ends
        Assert.True(repeats.First(Repeat.LaunchFailed, Errno.EAGAIN, 25_001, "fork"));
    }
}
