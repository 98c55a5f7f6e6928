# Bootstraps the throw-away RT of tests/support/rt.py (REFERENCE.md 5.0, step 5): queues, the
# correlation custom fields, root's password, recoverlink's API user with its rights and one
# token, and the shipped callback scrip. REST2 in RT 5.0.3 cannot apply a custom field to queues,
# hence RT's Perl API. Run as www-data with RT's environment; the values come from RL_* variables.
# Prints {"token": ...}.
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
sub queue_named {
    my $queue = RT::Queue->new($system);
    must( "queue $_[0]", $queue->Create( Name => $_[0] ) );
    return $queue;
}
sub ticket_field {
    my $field = RT::CustomField->new($system);
    must( "custom field $_[0]", $field->Create(
        Name => $_[0], Type => 'Freeform', MaxValues => 1,
        LookupType => RT::Ticket->CustomFieldLookupType,
    ) );
    return $field;
}

my $incidents = queue_named( $ENV{RL_QUEUE} );
my $unlinked  = queue_named( $ENV{RL_UNLINKED_QUEUE} );
must( 'apply to all queues', ticket_field( $ENV{RL_CUSTOM_FIELD} )->AddToObject( RT::Queue->new($system) ) );
must( 'apply to one queue', ticket_field( $ENV{RL_QUEUE_ONLY_FIELD} )->AddToObject($incidents) );

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
for my $queue ( $incidents, $unlinked ) {
    must( 'right CreateTicket', $api->PrincipalObj->GrantRight( Right => 'CreateTicket', Object => $queue ) );
}
# One token per user: token auth bcrypt-checks every token the user owns.
my ( $token_id, $token_message, $token ) = RT::AuthToken->new($system)->Create(
    Owner => $api->id, Description => 'recoverlink tests',
);
must( 'API token', $token_id, $token_message );

if ( my $file = $ENV{RL_SCRIP_FILE} ) {
    open my $fh, '<', $file or die "bootstrap: cannot read $file: $!\n";
    my $code = do { local $/; <$fh> };
    for my $condition ( 'On Status Change', 'On Owner Change' ) {
        my $scrip = RT::Scrip->new($system);
        must( "scrip $condition", $scrip->Create(
            Queue => 0, Description => "recoverlink callback ($condition)",
            ScripCondition => $condition, ScripAction => 'User Defined', Template => 'Blank',
            CustomPrepareCode => 'return 1;', CustomCommitCode => $code,
        ) );
    }
}
print JSON::encode_json( { token => $token } ), "\n";
