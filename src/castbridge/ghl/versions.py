"""Every HighLevel endpoint castbridge calls, with its pinned `Version` header (ghl.md §11).

One table, so a version is changed in one place and never mixed per call site. `v3` is never
used: it renames the OAuth paths and fields, and old paths answer 400 under it (ghl.md §6.5).
"""

from __future__ import annotations

from dataclasses import dataclass

CONVERSATIONS_VERSION = "2021-04-15"
CONTACTS_VERSION = "2021-07-28"
OAUTH_VERSION = "2021-07-28"
USERS_VERSION = "2021-07-28"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One HighLevel operation: a name for logs, method, path template and `Version` value."""

    name: str
    method: str
    path: str
    version: str | None  # None: send no Version header at all

    def url_path(self, **params: str) -> str:
        from urllib.parse import quote

        return self.path.format(**{key: quote(value, safe="") for key, value in params.items()})


# No Version header in the spec for the token endpoint, so none is sent.
OAUTH_TOKEN = Endpoint("oauth.token", "POST", "/oauth/token", None)
OAUTH_LOCATION_TOKEN = Endpoint(
    "oauth.location_token", "POST", "/oauth/locationToken", OAUTH_VERSION
)
OAUTH_INSTALLED_LOCATIONS = Endpoint(
    "oauth.installed_locations", "GET", "/oauth/installedLocations", OAUTH_VERSION
)
MESSAGE_STATUS = Endpoint(
    "conversations.message_status",
    "PUT",
    "/conversations/messages/{message_id}/status",
    CONVERSATIONS_VERSION,
)
INBOUND_MESSAGE = Endpoint(
    "conversations.inbound_message",
    "POST",
    "/conversations/messages/inbound",
    CONVERSATIONS_VERSION,
)
GET_MESSAGE = Endpoint(
    "conversations.get_message",
    "GET",
    "/conversations/messages/{message_id}",
    CONVERSATIONS_VERSION,
)
SEARCH_CONVERSATIONS = Endpoint(
    "conversations.search", "GET", "/conversations/search", CONVERSATIONS_VERSION
)
# The trailing slash is part of HighLevel's path for this operation.
CREATE_CONVERSATION = Endpoint(
    "conversations.create", "POST", "/conversations/", CONVERSATIONS_VERSION
)
DUPLICATE_CONTACT = Endpoint(
    "contacts.search_duplicate", "GET", "/contacts/search/duplicate", CONTACTS_VERSION
)
UPSERT_CONTACT = Endpoint("contacts.upsert", "POST", "/contacts/upsert", CONTACTS_VERSION)
UPDATE_CONTACT = Endpoint("contacts.update", "PUT", "/contacts/{contact_id}", CONTACTS_VERSION)
CONVERSATION_MESSAGES = Endpoint(
    "conversations.messages",
    "GET",
    "/conversations/{conversation_id}/messages",
    CONVERSATIONS_VERSION,
)
# The settings page confirms its user's role and locations here (ghl.md §13, `users.readonly`).
GET_USER = Endpoint("users.get", "GET", "/users/{user_id}", USERS_VERSION)

ENDPOINTS: tuple[Endpoint, ...] = (
    OAUTH_TOKEN,
    OAUTH_LOCATION_TOKEN,
    OAUTH_INSTALLED_LOCATIONS,
    MESSAGE_STATUS,
    INBOUND_MESSAGE,
    GET_MESSAGE,
    SEARCH_CONVERSATIONS,
    CREATE_CONVERSATION,
    DUPLICATE_CONTACT,
    UPSERT_CONTACT,
    UPDATE_CONTACT,
    CONVERSATION_MESSAGES,
    GET_USER,
)
