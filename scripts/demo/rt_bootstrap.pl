# Bootstraps the demo's throw-away RT (scripts/demo/request_tracker.py): the Incidents queue, the
# correlation custom field, root's password, recoverlink's API user with its rights and one token,
# and the shipped callback scrip (deploy/rt/recoverlink_scrip.pl). A smaller sibling of the test
# suite's tests/support/rt_bootstrap.pl: one queue, one field. REST2 in RT 5.0.3 cannot apply a
# custom field to queues, hence RT's Perl API. Run as www-data with RT's environment; the values
# come from RL_* variables. Prints {"token": ...}.
use strict;
use warnings;
use lib "/usr/share/request-tracker5/lib";
use RT;
use JSON ();
RT::LoadConfig();
RT::Init();

my $system = RT->SystemUser;
sub must {
    my ( $what, $ok, $message ) = @_;
    die "bootstrap: $what: " . ( $message // 'failed' ) . "\n" unless $ok;
    return $ok;
}

my $queue = RT::Queue->new($system);
must( "queue $ENV{RL_QUEUE}", $queue->Create( Name => $ENV{RL_QUEUE}, Description => 'recoverlink demo incidents' ) );

my $field = RT::CustomField->new($system);
must( "custom field $ENV{RL_CUSTOM_FIELD}", $field->Create(
    Name => $ENV{RL_CUSTOM_FIELD}, Type => 'Freeform', MaxValues => 1,
    LookupType => RT::Ticket->CustomFieldLookupType,
) );
must( 'apply to all queues', $field->AddToObject( RT::Queue->new($system) ) );

# RT only ever raises a stored hash's cost: set the password again after lowering BcryptCost.
my $root = RT::User->new($system);
$root->Load('root');
must( 'root password', $root->SetPassword( $ENV{RL_ROOT_PASSWORD} ) );

my $api = RT::User->new($system);
must( 'API user', $api->Create(
    Name => $ENV{RL_API_USER}, EmailAddress => "$ENV{RL_API_USER}\@localhost", Privileged => 1,
) );
for my $right (qw(SeeQueue ShowTicket ModifyTicket CommentOnTicket ReplyToTicket OwnTicket
                  SeeCustomField ModifyCustomField)) {
    must( "right $right", $api->PrincipalObj->GrantRight( Right => $right, Object => $RT::System ) );
}
must( 'right CreateTicket', $api->PrincipalObj->GrantRight( Right => 'CreateTicket', Object => $queue ) );
my ( $token_id, $token_message, $token ) = RT::AuthToken->new($system)->Create(
    Owner => $api->id, Description => 'recoverlink demo',
);
must( 'API token', $token_id, $token_message );

open my $fh, '<', $ENV{RL_SCRIP_FILE} or die "bootstrap: cannot read $ENV{RL_SCRIP_FILE}: $!\n";
my $code = do { local $/; <$fh> };
for my $condition ( 'On Status Change', 'On Owner Change' ) {
    my $scrip = RT::Scrip->new($system);
    must( "scrip $condition", $scrip->Create(
        Queue => 0, Description => "recoverlink callback ($condition)",
        ScripCondition => $condition, ScripAction => 'User Defined', Template => 'Blank',
        CustomPrepareCode => 'return 1;', CustomCommitCode => $code,
    ) );
}
print JSON::encode_json( { token => $token } ), "\n";
