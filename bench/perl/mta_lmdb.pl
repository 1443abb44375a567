# The cache-hit path of the Perl tool "MTASTS-EXIM-PERL" (mta-lmdb.pl), for bench/exim_bench.py.
# Loaded by Exim's perl_startup; called as ${perl{getmta}{domain}}. Like the original it reads
# "<d>:expire" and "<d>:mode" from the LMDB cache through LMDB_File and answers the mode while
# the entry has not expired. The network part of the original (Mail::STS TXT, TLSA and policy
# fetches on every call) is left out: this measures the cache read alone, the best case.
#
#   getmta       opens the environment on every call, as mta-lmdb.pl did;
#   getmta_keep  opens it once per process, the best a Perl port could do.
#
# The cache path comes from $MTA_LMDB_CACHE, set in perl_startup before this file is loaded
# (Exim empties the environment, so %ENV is no help).
use strict;
use warnings;
use LMDB_File qw(:flags);

our $MTA_LMDB_CACHE;
$MTA_LMDB_CACHE = '/var/lib/mtasts/cache.mdb' unless defined $MTA_LMDB_CACHE;

sub mta_lmdb_open {
    return LMDB::Env->new($MTA_LMDB_CACHE, {
        flags      => MDB_NOSUBDIR | MDB_RDONLY,
        mapsize    => 1024 * 1024 * 1024,
        maxreaders => 126,
    });
}

sub mta_lmdb_mode {
    my ($env, $domain) = @_;
    my $mode = 'none';
    eval {
        my $txn = $env->BeginTxn(MDB_RDONLY);
        my $db = $txn->OpenDB();
        my $expire = $db->get("${domain}:expire");
        if (defined $expire && $expire =~ /^\d+$/ && $expire > time()) {
            my $m = $db->get("${domain}:mode");
            $mode = $m if defined $m;
        }
        $txn->abort;
        1;
    } or do { $mode = 'fail'; };
    return $mode;
}

sub getmta {
    my $domain = lc shift;
    my $env = eval { mta_lmdb_open() } or return 'fail';
    return mta_lmdb_mode($env, $domain);
}

my $KEPT_ENV;
sub getmta_keep {
    my $domain = lc shift;
    $KEPT_ENV //= eval { mta_lmdb_open() } or return 'fail';
    return mta_lmdb_mode($KEPT_ENV, $domain);
}

1;
